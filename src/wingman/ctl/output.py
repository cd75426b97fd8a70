"""Output for ``wingmanctl``: a readable table by default, JSON with ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_DEGRADED = 1  # something is wrong but the command ran (status: degraded; check: pending)
EXIT_DOWN = 2  # the thing asked about is down or the operation failed
EXIT_REFUSED = 3  # the change would break a rule (e.g. disable the last active admin)
EXIT_USAGE = 64  # bad input (EX_USAGE)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def emit(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, as_json: bool, title: str = ""
) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(list(rows)).decode() + "\n")
        return
    table = Table(title=title or None, show_lines=False)
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)


def emit_object(data: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(data).decode() + "\n")
        return
    table = Table(show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key.replace("_", " "), "" if value is None else str(value))
    Console().print(table)


def progress(message: str) -> None:
    """A step of a long operation, on stderr so that ``--json`` output stays clean."""
    click.echo(f"• {message}", err=True)


def emit_report(
    payload: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    footer: str = "",
) -> None:
    """A report: ``payload`` (which holds the rows) as JSON, or the rows as a table and a footer.

    The table never wraps a cell, even when stdout is not a terminal, so each row stays one line
    that scripts and tests can match against the JSON.
    """
    if as_json:
        sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
        return
    console = Console() if sys.stdout.isatty() else Console(width=400)
    table = Table(show_lines=False)
    for column in columns:
        table.add_column(column.replace("_", " "), no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)
    if footer:
        console.print(footer)
