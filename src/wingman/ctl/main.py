"""The ``wingmanctl`` command group.

Each command's module is imported when that command runs (click's lazily loaded subcommands):
importing all of them pulls in the web app, the ORM models and the migrations, which made
every command, ``wingmanctl status`` included, start several seconds late.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# Command name → "module:attribute" of its click command.
COMMANDS = {
    "dev": "wingman.ctl.dev:dev",
    "migrate": "wingman.ctl.migrate:migrate",
    "tune": "wingman.ctl.tune:tune",
    "users": "wingman.ctl.users:users",
    "queues": "wingman.ctl.queues:queues",
    "audit": "wingman.ctl.audit:audit",
    "status": "wingman.ctl.status:status",
    "top": "wingman.ctl.top:top",
    "backup": "wingman.ctl.backup:backup",
    "restore": "wingman.ctl.backup:restore",
    "doctor": "wingman.ctl.doctor:doctor",
    "logs": "wingman.ctl.logs:logs",
    "config": "wingman.ctl.config:config",
    "bench": "wingman.ctl.bench:bench",
    "upgrade": "wingman.ctl.upgrade:upgrade",
    "tls": "wingman.ctl.tls:tls",
    "lb": "wingman.ctl.lb:lb",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported by name, on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = self.lazy[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
        return command


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(package_name="wingman")
def main() -> None:
    """Administer Wingman: status, top, queues, tuning, users, TLS, audit log, backups, upgrades,
    migrations, the dev stack."""
