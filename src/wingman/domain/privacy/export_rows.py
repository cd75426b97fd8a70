"""What an export holds, and the streaming read of it from PostgreSQL into the archive.

Each member is one table's rows owned by the user, as JSON built by PostgreSQL itself
(``row_to_json``: no per-row Python objects), fetched through a server-side cursor a few
thousand rows at a time. Columns come from the models, so a new column is exported without a
change here; only secrets and internal bookkeeping are left out (:data:`EXPORTED`). Every table
that refers to a user is either exported or named in :data:`NOT_EXPORTED` with the reason (a
test checks this against the models, so a new table cannot be missed).

The whole archive is read in one ``REPEATABLE READ`` read-only transaction: one snapshot, so
the row counts of the manifest agree with each other however the account changes meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wingman.db.models import metadata
from wingman.domain.privacy.archive import ArchiveWriter

# Rows fetched per round trip of the server-side cursor.
FETCH_ROWS = 2000


@dataclass(frozen=True, slots=True)
class ExportedTable:
    """One member: ``table``'s rows matching ``where`` (binds ``:user_id``, and ``:session_id``
    when ``per_session``), in ``order``, without the ``excluded`` columns."""

    member: str
    table: str
    where: str
    order: str = "created_at, id"
    excluded: frozenset[str] = frozenset()
    per_session: bool = False

    def columns(self) -> list[str]:
        table: Table = metadata.tables[self.table]
        return [column.name for column in table.columns if column.name not in self.excluded]

    def query(self) -> str:
        columns = ", ".join(f'"{name}"' for name in self.columns())
        return (
            f"SELECT row_to_json(t)::text FROM (SELECT {columns} FROM {self.table}"  # noqa: S608
            f" WHERE {self.where} ORDER BY {self.order}) AS t"
        )


EXPORTED: tuple[ExportedTable, ...] = (
    ExportedTable("account.jsonl", "users", "id = :user_id"),
    ExportedTable("settings.jsonl", "user_settings", "user_id = :user_id", order="user_id"),
    # Sign-ins (one row per issued refresh token); the token's hash is a secret.
    ExportedTable(
        "sign_ins.jsonl",
        "refresh_tokens",
        "user_id = :user_id",
        excluded=frozenset({"token_hash"}),
    ),
    ExportedTable("profiles.jsonl", "target_profiles", "user_id = :user_id"),
    ExportedTable("sessions.jsonl", "chat_sessions", "user_id = :user_id"),
    # The fencing token of a reply's run is bookkeeping with no meaning outside the server.
    ExportedTable(
        "messages.jsonl",
        "messages",
        "session_id = :session_id",
        excluded=frozenset({"run_id"}),
        per_session=True,
    ),
    ExportedTable(
        "events.jsonl",
        "session_events",
        "session_id = :session_id AND user_id = :user_id",
        per_session=True,
    ),
    # Transcript imports: what was uploaded when, and the outcome (the messages are above).
    ExportedTable("imports.jsonl", "session_imports", "user_id = :user_id"),
    # Where the file lies on the server is of no use to the owner.
    ExportedTable(
        "exports.jsonl", "data_exports", "user_id = :user_id", excluded=frozenset({"file_path"})
    ),
)

# Tables that refer to a user but are not the user's data, and why.
NOT_EXPORTED: dict[str, str] = {
    "global_config": "settings an admin changed (updated_by), not the admin's own data",
    "otp_requests": "pending codes, keyed by a hash of the address; none outlives ten minutes",
    "audit_log": "the operator's record of admin actions",
}


async def write_export(engine: AsyncEngine, user_id: UUID, archive: ArchiveWriter) -> None:
    """Stream every :data:`EXPORTED` member of ``user_id`` into ``archive``."""
    async with engine.connect() as connection:
        # The first statement of the transaction fixes its snapshot for every member.
        await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        # One cursor may outlive the usual per-statement limit on a large account; the job has
        # its own timeout. Times in UTC whatever the server's zone.
        await connection.execute(text("SET LOCAL statement_timeout = 0"))
        await connection.execute(text("SET LOCAL TIME ZONE 'UTC'"))
        sessions = [
            row[0]
            for row in await connection.execute(
                text(
                    "SELECT id FROM chat_sessions WHERE user_id = :user_id ORDER BY created_at, id"
                ),
                {"user_id": user_id},
            )
        ]
        for spec in EXPORTED:
            with archive.member(spec.member) as member:
                if not spec.per_session:
                    await _stream(
                        connection, spec.query(), {"user_id": user_id}, member.write_lines
                    )
                    continue
                for session_id in sessions:
                    await _stream(
                        connection,
                        spec.query(),
                        {"user_id": user_id, "session_id": session_id},
                        member.write_lines,
                    )
        await connection.rollback()


async def _stream(
    connection: AsyncConnection,
    sql: str,
    params: dict[str, UUID],
    write: Callable[[Iterable[str]], None],
) -> None:
    result = await connection.stream(text(sql).execution_options(yield_per=FETCH_ROWS), params)
    async for rows in result.partitions(FETCH_ROWS):
        write([row[0] for row in rows])
