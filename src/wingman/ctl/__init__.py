"""``wingmanctl``: the admin's command line (dev stack, migrations; more areas as they land)."""

from wingman.ctl.main import main

__all__ = ["main"]
