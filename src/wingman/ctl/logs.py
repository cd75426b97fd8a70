"""``wingmanctl logs``: the journal in the appliance, the log files of a development stack."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from wingman.ctl.layout import layout_option, resolve
from wingman.ctl.output import EXIT_DOWN
from wingman.ops.units import APPLIANCE_UNIT_NAMES


@click.command()
@click.argument("unit", required=False, type=click.Choice(APPLIANCE_UNIT_NAMES))
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Lines of history to show first.",
)
@layout_option
def logs(unit: str | None, follow: bool, lines: int, data_dir: Path | None) -> None:
    """Show the logs of UNIT (all units when omitted).

    \b
    UNIT is one of: web, worker-ai, worker-default, worker-heavy, postgres, redis-queue,
    redis-cache, and on the appliance proxy (the HTTPS front door, Caddy). The appliance
    reads the systemd journal (journalctl -u <unit>); a development stack's log files are
    read with tail (web and workers under log/, PostgreSQL's and each Redis role's own log).
    """
    source, _ = resolve(data_dir)
    try:
        command = source.log_command(unit, lines, follow)
    except LookupError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    if shutil.which(command[0]) is None:
        click.echo(f"error: {command[0]} is not installed", err=True)
        raise SystemExit(EXIT_DOWN)
    if command[0] == "tail" and not any(Path(arg).exists() for arg in command[3:]):
        click.echo("error: no log file yet (has the stack been started?)", err=True)
        raise SystemExit(EXIT_DOWN)
    # Hand the terminal over: Ctrl-C, paging and exit status are the tool's own.
    os.execvp(command[0], command)  # noqa: S606 - a fixed tool with arguments we built
