"""``wingmanctl dev``: the private development stack (PostgreSQL, Redis, web, workers)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from wingman.ctl.output import EXIT_DEGRADED, EXIT_DOWN, emit, json_option, progress
from wingman.devstack.binaries import MissingBinaryError
from wingman.devstack.postgres import PostgresError
from wingman.devstack.redis import RedisError
from wingman.devstack.stack import DevStack, DevStackError
from wingman.devstack.supervisor import Supervisor

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var"),
    show_default=True,
    help="Folder holding the clusters, logs, pid files and generated settings.",
)
_FAILURES = (MissingBinaryError, PostgresError, RedisError, DevStackError)


@click.group()
def dev() -> None:
    """Run the whole stack locally from this host's PostgreSQL and Redis binaries."""


def _up(stack: DevStack) -> str:
    try:
        return stack.up(report=progress)
    except _FAILURES as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None


@dev.command()
@data_dir_option
@click.option("--port", type=int, help="Web port (default: 8000, or a free one if 8000 is taken).")
def up(data_dir: Path, port: int | None) -> None:
    """Start whatever is not running yet, migrate, and print the base URL. Safe to repeat."""
    base_url = _up(DevStack(data_dir, web_port=port))
    click.echo(base_url)


@dev.command()
@data_dir_option
def down(data_dir: Path) -> None:
    """Stop what this folder runs: a `dev run` keeping it up (which then stops the rest), web,
    workers, Redis and PostgreSQL (fast shutdown)."""
    DevStack(data_dir).down(report=progress)


@dev.command()
@data_dir_option
@json_option
def status(data_dir: Path, as_json: bool) -> None:
    """Show each component: running or not, pid, address or log. Exit 1 if any is down."""
    rows = DevStack(data_dir).status()
    if not rows:
        click.echo(f"no dev stack in {data_dir.resolve()} (run `wingmanctl dev up`)", err=True)
        raise SystemExit(EXIT_DOWN)
    emit(
        [
            {
                "component": r.name,
                "state": "running" if r.running else "stopped",
                "pid": r.pid,
                "where": r.detail,
            }
            for r in rows
        ],
        ["component", "state", "pid", "where"],
        as_json=as_json,
    )
    if not all(r.running for r in rows):
        raise SystemExit(EXIT_DEGRADED)


@dev.command()
@data_dir_option
@click.option("--port", type=int, help="Web port (default: 8000, or a free one if 8000 is taken).")
def run(data_dir: Path, port: int | None) -> None:
    """Start the stack and keep it running until Ctrl-C (or SIGTERM), then stop it all.

    A web or worker process that stops is started again after a back-off (1 s, doubling up to
    30 s while it keeps failing), and the terminal and its log say so.
    """
    stack = DevStack(data_dir, web_port=port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    # From the start: a `dev down` meanwhile (another terminal) stops this process first.
    with stack.supervised():
        try:
            base_url = _up(stack)
            click.echo(
                f"\nWingman is running at {base_url}  (API docs: {base_url}/api/docs)\n"
                f"Logs: {stack.log_dir}/  Settings: {stack.settings_file}\n"
                "Press Ctrl-C (or run `wingmanctl dev down`) to stop everything.\n"
            )
            # A web or worker process that dies is started again, with back-off, as on the
            # appliance.
            Supervisor(stack, report=progress).run(stop)
        finally:
            click.echo("\nstopping…", err=True)
            stack.down(report=progress)
