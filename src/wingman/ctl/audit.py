"""``wingmanctl audit``: read the audit log, newest first, filtered by actor, action and time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.ctl.output import EXIT_USAGE, emit, json_option
from wingman.ctl.session import cli_settings, run_in_transaction

COLUMNS = ["created_at", "actor", "action", "target", "details"]
_RELATIVE = re.compile(r"^(?P<count>\d+)(?P<unit>[mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``, ``12h``, ``30m`` (before ``now``) or an ISO 8601 date or time (UTC if no zone)."""
    relative = _RELATIVE.match(text.strip())
    if relative is not None:
        return now - timedelta(**{_UNITS[relative["unit"]]: int(relative["count"])})
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _matching(column: Any, pattern: str) -> Any:
    """Exact, or a prefix when ``pattern`` ends with ``*`` (``users.*``, ``cli:*``)."""
    if pattern.endswith("*"):
        prefix = pattern[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(prefix + "%", escape="\\")
    return column == pattern


@click.command()
@click.option("--actor", help="Who acted: exact, or a prefix ending in * (cli:*).")
@click.option("--action", help="What was done: exact, or a prefix ending in * (users.*).")
@click.option("--since", help="Only entries this recent: 30m, 12h, 7d, or an ISO date/time.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@json_option
def audit(
    actor: str | None, action: str | None, since: str | None, limit: int, as_json: bool
) -> None:
    """Show audit log entries (admin actions from the API and this command line), newest first.

    Exit status: 0 shown (even when none match), 2 the database is unreachable, 64 bad --since.
    """
    from wingman.db.models import AuditLogEntry

    try:
        after = parse_since(since, datetime.now(UTC)) if since else None
    except ValueError:
        click.echo(f"error: --since {since!r} is neither 30m/12h/7d nor an ISO date", err=True)
        raise SystemExit(EXIT_USAGE) from None

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        query = select(AuditLogEntry).order_by(
            AuditLogEntry.created_at.desc(), AuditLogEntry.id.desc()
        )
        if actor:
            query = query.where(_matching(AuditLogEntry.actor, actor))
        if action:
            query = query.where(_matching(AuditLogEntry.action, action))
        if after is not None:
            query = query.where(AuditLogEntry.created_at >= after)
        return [
            {
                "id": str(entry.id),
                "created_at": entry.created_at.isoformat(timespec="seconds"),
                "actor": entry.actor,
                "actor_id": str(entry.actor_id) if entry.actor_id else None,
                "action": entry.action,
                "target": entry.target,
                "details": entry.details
                if as_json
                else msgspec.json.encode(entry.details).decode(),
            }
            for entry in await session.scalars(query.limit(limit))
        ]

    emit(run_in_transaction(cli_settings(), work), COLUMNS, as_json=as_json)
