"""The ``wingmanctl`` command group."""

from __future__ import annotations

import click

from wingman.ctl.dev import dev
from wingman.ctl.migrate import migrate


@click.group()
@click.version_option(package_name="wingman")
def main() -> None:
    """Administer Wingman: development stack, database migrations."""


main.add_command(dev)
main.add_command(migrate)
