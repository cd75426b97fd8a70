"""``python -m wingman.ctl`` is the ``wingmanctl`` command."""

from wingman.ctl.main import main

main()
