"""The models describe every table of the data model with the agreed key and time types.

No database: these read the metadata and compile types for the PostgreSQL dialect.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import pytest
from advanced_alchemy.base import orm_registry
from sqlalchemy import CheckConstraint, Column, Enum, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import configure_mappers

from wingman.db.models import (
    ChatSessionStatus,
    DataExportStatus,
    EnumString,
    MessageSender,
    OtpChannel,
    ProcessingStatus,
    ReplyLength,
    UserRole,
    UserStatus,
    UserTier,
    metadata,
)

DESIGN_TABLES = {
    "users",
    "user_settings",
    "otp_requests",
    "refresh_tokens",
    "tones",
    "global_config",
    "target_profiles",
    "chat_sessions",
    "messages",
    "session_events",
    "data_exports",
    "audit_log",
}
# Append-only tables: rows are never updated, so they have no updated_at.
APPEND_ONLY = {"session_events", "audit_log"}
# Tables keyed by something other than their own generated UUID.
NATURAL_KEYS = {"user_settings": ["user_id"], "global_config": ["key"]}
# Columns that reference rows by id without following the *_id naming.
ID_COLUMNS = {("refresh_tokens", "replaced_by"), ("global_config", "updated_by")}

ENUM_COLUMNS: list[tuple[str, str, type[enum.StrEnum]]] = [
    ("users", "tier", UserTier),
    ("users", "role", UserRole),
    ("users", "status", UserStatus),
    ("user_settings", "reply_length", ReplyLength),
    ("otp_requests", "channel", OtpChannel),
    ("chat_sessions", "status", ChatSessionStatus),
    ("messages", "sender", MessageSender),
    ("messages", "processing_status", ProcessingStatus),
    ("data_exports", "status", DataExportStatus),
]

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def design_tables() -> list[Table]:
    return [metadata.tables[name] for name in sorted(DESIGN_TABLES)]


def pg_type(column: Column[Any]) -> str:
    return column.type.compile(dialect=DIALECT)


def test_every_design_table_is_in_the_metadata() -> None:
    assert set(metadata.tables) >= DESIGN_TABLES


def test_models_share_advanced_alchemys_metadata() -> None:
    assert metadata is orm_registry.metadata


@pytest.mark.parametrize("table", design_tables(), ids=lambda table: table.name)
def test_primary_keys_are_uuids_unless_natural(table: Table) -> None:
    key = [column.name for column in table.primary_key.columns]
    assert key == NATURAL_KEYS.get(table.name, ["id"])
    if table.name != "global_config":
        assert all(pg_type(column) == "UUID" for column in table.primary_key.columns)


@pytest.mark.parametrize("table", design_tables(), ids=lambda table: table.name)
def test_ids_and_references_are_uuids(table: Table) -> None:
    for column in table.columns:
        if (
            column.name == "id"
            or column.name.endswith("_id")
            or (table.name, column.name) in ID_COLUMNS
        ):
            assert pg_type(column) == "UUID", f"{table.name}.{column.name}"


@pytest.mark.parametrize("table", design_tables(), ids=lambda table: table.name)
def test_timestamps_are_present_and_timezone_aware(table: Table) -> None:
    assert "created_at" in table.columns
    assert ("updated_at" in table.columns) == (table.name not in APPEND_ONLY)
    for name in ("created_at", "updated_at"):
        if name in table.columns:
            column = table.columns[name]
            assert not column.nullable
            # A server default lets raw SQL and bulk jobs insert rows without naming it.
            assert column.server_default is not None, f"{table.name}.{name}"
    for column in table.columns:
        if column.type.python_type is datetime:
            assert pg_type(column) == "TIMESTAMP WITH TIME ZONE", f"{table.name}.{column.name}"


@pytest.mark.parametrize(
    ("table", "column", "values"), ENUM_COLUMNS, ids=[f"{t}.{c}" for t, c, _ in ENUM_COLUMNS]
)
def test_enumerated_columns_are_strings_checked_against_their_enum(
    table: str, column: str, values: type[enum.StrEnum]
) -> None:
    mapped = metadata.tables[table].columns[column]
    assert isinstance(mapped.type, EnumString)
    assert mapped.type.enum_class is values
    assert pg_type(mapped).startswith("VARCHAR")

    checks = {
        constraint.name: str(constraint.sqltext)
        for constraint in metadata.tables[table].constraints
        if isinstance(constraint, CheckConstraint)
    }
    check = checks[f"ck_{table}_{column}"]
    assert all(f"'{member.value}'" in check for member in values)


def test_no_postgresql_enum_types() -> None:
    for table in metadata.tables.values():
        for column in table.columns:
            assert not isinstance(column.type, Enum), f"{table.name}.{column.name}"


def test_required_indexes_exist() -> None:
    indexes = {index.name for table in metadata.tables.values() for index in table.indexes}
    assert {
        "uq_users_email_lower",
        "ix_otp_requests_destination_hash_created_at",
        "ix_refresh_tokens_user_id",
        "ix_refresh_tokens_family_id",
        "ix_target_profiles_user_id_updated_at",
        "ix_chat_sessions_user_id_updated_at_id",
        "ix_messages_session_id_created_at_id",
        "ix_messages_processing_status_in_flight",
        "uq_messages_session_id_idempotency_key",
        "ix_session_events_session_id_created_at",
        "ix_data_exports_user_id",
        "ix_audit_log_created_at",
    } <= indexes


def test_relationships_never_load_implicitly() -> None:
    configure_mappers()
    for mapper in orm_registry.mappers:
        if mapper.class_.__module__ != "wingman.db.models":
            continue
        for relationship in mapper.relationships:
            assert relationship.lazy == "raise", f"{mapper.class_.__name__}.{relationship.key}"


def test_enum_string_loads_members_and_refuses_unknown_values() -> None:
    column_type = EnumString(UserTier)

    assert column_type.process_result_value("premium", DIALECT) is UserTier.PREMIUM
    assert column_type.process_bind_param(UserTier.FREE, DIALECT) == "free"
    with pytest.raises(ValueError, match="gold"):
        column_type.process_bind_param("gold", DIALECT)
