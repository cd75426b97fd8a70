"""The ``wingmanctl`` command group."""

from __future__ import annotations

import click

from wingman.ctl.dev import dev
from wingman.ctl.migrate import migrate
from wingman.ctl.tune import tune
from wingman.ctl.users import users


@click.group()
@click.version_option(package_name="wingman")
def main() -> None:
    """Administer Wingman: tuning, users, migrations and the dev stack."""


main.add_command(dev)
main.add_command(migrate)
main.add_command(tune)
main.add_command(users)
