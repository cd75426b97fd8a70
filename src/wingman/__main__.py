"""``python -m wingman`` is ``wingmanctl``, Wingman's one command line.

Processes started from a virtualenv's interpreter use it (``python -m wingman worker ...``: the
worker supervisor's children, the dev stack, the tests), so they need no console script on PATH.
"""

from wingman.ctl.main import main

main(prog_name="wingmanctl")
