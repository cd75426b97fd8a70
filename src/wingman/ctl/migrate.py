"""``wingmanctl migrate``: bring the database schema to the code's head revision.

It connects to ``database.direct_url`` when set (PostgreSQL itself, past a pooler). Several nodes
may run it at once: ``migrations/env.py`` takes a transaction-level advisory lock in the database
before it reads ``alembic_version``, so the runs queue up and all but the first find nothing to do.
"""

from __future__ import annotations

import click

from wingman.config import SettingsError, load_settings
from wingman.ctl.output import EXIT_DEGRADED, EXIT_DOWN, EXIT_OK, emit_object, json_option, progress


@click.command()
@click.option(
    "--check", is_flag=True, help="Only tell whether migrations are pending (exit 1 if so)."
)
@json_option
def migrate(check: bool, as_json: bool) -> None:
    """Apply pending migrations (to head), or with --check report them without applying."""
    from wingman.db.migrations import head_revision, pending_revisions, upgrade_to_head

    try:
        url = load_settings().database.effective_direct_url
    except SettingsError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from None
    try:
        pending = pending_revisions(url)
    except Exception as exc:  # noqa: BLE001 - any connection failure is reported, not traced
        click.echo(f"error: cannot read the schema version: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    head = head_revision()
    if check:
        emit_object({"head": head, "pending": pending, "up_to_date": not pending}, as_json=as_json)
        raise SystemExit(EXIT_DEGRADED if pending else EXIT_OK)
    applied: list[str] = []
    if pending:
        progress(f"applying {len(pending)} migration(s): {', '.join(pending)}")
        applied = upgrade_to_head(url)
        if not applied:
            progress("another process applied them first")
    emit_object({"head": head, "applied": applied, "up_to_date": True}, as_json=as_json)
