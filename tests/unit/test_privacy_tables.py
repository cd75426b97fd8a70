"""Every table that refers to an account is exported or says why not, and is purged: checked
against the models, so a table added later cannot be forgotten by either."""

from __future__ import annotations

from sqlalchemy import Table

from wingman.db.models import metadata
from wingman.domain.privacy.export_rows import EXPORTED, NOT_EXPORTED
from wingman.domain.privacy.purge import STEPS

OWNERS = {"users", "chat_sessions"}
# Purged by the account's own row (its ON DELETE rule), or by name rather than by reference.
PURGED_OTHERWISE = {"users", "global_config", "otp_requests", "audit_log"}


def refers_to_an_account(table: Table) -> bool:
    return table.name == "users" or any(fk.column.table.name in OWNERS for fk in table.foreign_keys)


def test_every_table_referring_to_an_account_is_exported_or_excused() -> None:
    exported = {spec.table for spec in EXPORTED}
    for table in metadata.sorted_tables:
        if refers_to_an_account(table):
            assert table.name in exported or table.name in NOT_EXPORTED, table.name
    assert set(NOT_EXPORTED) <= set(metadata.tables)


def test_every_table_referring_to_an_account_is_purged() -> None:
    purged = {name for name, _ in STEPS} | PURGED_OTHERWISE
    for table in metadata.sorted_tables:
        if refers_to_an_account(table):
            assert table.name in purged, table.name


def test_exported_columns_leave_out_secrets() -> None:
    by_table = {spec.table: spec.columns() for spec in EXPORTED}
    assert "token_hash" not in by_table["refresh_tokens"]
    assert "content" in by_table["messages"]
    assert "run_id" not in by_table["messages"]
