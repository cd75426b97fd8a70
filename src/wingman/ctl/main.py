"""The ``wingmanctl`` command group.

Each command's module is imported when that command runs (click's lazily loaded subcommands):
importing all of them pulls in the web app, the ORM models and the migrations, which made
every command, ``wingmanctl status`` included, start several seconds late.

It is Wingman's one command line: the admin's commands, and ``serve`` and ``worker``, which the
service units run (``python -m wingman`` is the same group).
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
    "updates": "wingman.ctl.updates:updates",
}

# The long-running processes the systemd units start (wingman-web, wingman-worker@<queue>), as
# the service user; listed apart in the help, since an admin runs them only to debug.
SERVICE_COMMANDS = {
    "serve": "wingman.ctl.processes:serve",
    "worker": "wingman.ctl.processes:worker",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported by name, on first use."""

    def __init__(
        self, *args: Any, lazy: dict[str, str], services: dict[str, str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = {**lazy, **services}
        self.services = frozenset(services)

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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The admin's commands, then the service units' commands in a section of their own."""
        commands = [
            (name, command)
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        ]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        sections = (
            ("Commands", [c for c in commands if c[0] not in self.services]),
            (
                "Service commands (run by the systemd units)",
                [c for c in commands if c[0] in self.services],
            ),
        )
        for title, rows in sections:
            if rows:
                with formatter.section(title):
                    formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in rows])


@click.group(cls=LazyGroup, lazy=COMMANDS, services=SERVICE_COMMANDS)
@click.version_option(package_name="wingman")
def main() -> None:
    """Administer Wingman: status, top, queues, tuning, users, TLS, audit log, backups, upgrades,
    operating-system updates, migrations, the dev stack; and run its web server and workers.

    \f
    Runs before every command, ``serve`` and ``worker`` included, which the units start as the
    unprivileged service user on every (re)start: so it does nothing. A check or set-up for the
    admin's commands (settings, root, output) belongs in those commands, or here behind
    ``ctx.invoked_subcommand not in SERVICE_COMMANDS``.
    """
