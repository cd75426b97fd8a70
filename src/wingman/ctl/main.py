"""The ``wingmanctl`` command group."""

from __future__ import annotations

import click

from wingman.ctl.audit import audit
from wingman.ctl.backup import backup, restore
from wingman.ctl.bench import bench
from wingman.ctl.config import config
from wingman.ctl.dev import dev
from wingman.ctl.doctor import doctor
from wingman.ctl.logs import logs
from wingman.ctl.migrate import migrate
from wingman.ctl.queues import queues
from wingman.ctl.status import status
from wingman.ctl.tls import tls
from wingman.ctl.top import top
from wingman.ctl.tune import tune
from wingman.ctl.upgrade import upgrade
from wingman.ctl.users import users


@click.group()
@click.version_option(package_name="wingman")
def main() -> None:
    """Administer Wingman: status, top, queues, tuning, users, TLS, audit log, backups, upgrades,
    migrations, the dev stack."""


main.add_command(dev)
main.add_command(migrate)
main.add_command(tune)
main.add_command(users)
main.add_command(queues)
main.add_command(audit)
main.add_command(status)
main.add_command(top)
main.add_command(backup)
main.add_command(restore)
main.add_command(doctor)
main.add_command(logs)
main.add_command(config)
main.add_command(bench)
main.add_command(upgrade)
main.add_command(tls)
