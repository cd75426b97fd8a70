"""Output for ``wingmanctl``: a readable table by default, JSON with ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_DEGRADED = 1  # something is wrong but the command ran (status: degraded; check: pending)
EXIT_DOWN = 2  # the thing asked about is down or the operation failed
EXIT_REFUSED = 3  # the change would break a rule (e.g. disable the last active admin)
EXIT_USAGE = 64  # bad input (EX_USAGE)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def console() -> Console:
    """A console that prints values as they are: no emoji codes (a fingerprint's ``:CD:`` would
    become a picture of a disc), 400 columns when stdout is not a terminal (no cell is cut)."""
    return Console(emoji=False) if sys.stdout.isatty() else Console(emoji=False, width=400)


def cell(value: Any) -> Text:
    """A table cell showing ``value`` literally (no rich markup: ``[::1]`` stays as it is)."""
    return Text("" if value is None else str(value))


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
        table.add_row(*(cell(row.get(c)) for c in columns))
    console().print(table)


def emit_object(data: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(data).decode() + "\n")
        return
    table = Table(show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key.replace("_", " "), cell(value))
    console().print(table)


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
    out = console()
    table = Table(show_lines=False)
    for column in columns:
        table.add_column(column.replace("_", " "), no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*(cell(row.get(c)) for c in columns))
    out.print(table)
    if footer:
        out.print(cell(footer))
