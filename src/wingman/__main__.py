"""``python -m wingman`` is the ``wingman`` command."""

from wingman.cli import main

main()
