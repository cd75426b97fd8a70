"""The purge of a deleted account, in small batches that never hold long locks.

Each step deletes at most :data:`BATCH_ROWS` rows per transaction
(``DELETE ... WHERE id IN (SELECT id ... LIMIT n)``) and commits, so a purge of millions of
messages holds each row lock for one short batch, and a purge killed half-way simply carries
on where it stopped when the job runs again. The user's row goes last, in the same transaction
as the audit entry that records the purge by id only, so the purge completes exactly once.

What goes: every row that refers to the account (its events, messages, sessions, profiles,
tokens, exports and their files, settings, the account), the pending one-time codes of its
email and phone (found by their keyed hash), its realtime history in Redis, and its email or
phone wherever the audit log quoted them (replaced by ``user:<id>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wingman.config import Settings
from wingman.db.models import (
    AuditLogEntry,
    DataExport,
    OtpChannel,
    SessionImport,
    User,
    UserStatus,
    utcnow,
)
from wingman.domain.accounts import hashing
from wingman.domain.imports.storage import remove_upload
from wingman.domain.privacy.exports import remove_files
from wingman.domain.realtime.events import user_keys

log = structlog.get_logger(__name__)

BATCH_ROWS = 5000

# (table, the rows of the account) in an order that leaves no row pointing at a deleted one
# for longer than a batch; the foreign keys' own ON DELETE rules cover what a batch touches.
_SESSIONS = "SELECT id FROM chat_sessions WHERE user_id = :user_id"
STEPS: tuple[tuple[str, str], ...] = (
    ("session_events", "user_id = :user_id"),
    ("session_events", f"session_id IN ({_SESSIONS})"),
    ("messages", f"session_id IN ({_SESSIONS})"),
    ("session_imports", "user_id = :user_id"),
    ("chat_sessions", "user_id = :user_id"),
    ("target_profiles", "user_id = :user_id"),
    ("refresh_tokens", "user_id = :user_id"),
    ("data_exports", "user_id = :user_id"),
    ("user_settings", "user_id = :user_id"),
)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    purged: bool
    rows: dict[str, int]
    reason: str = ""


async def _delete_batches(
    sessions: async_sessionmaker[AsyncSession], table: str, where: str, params: dict[str, Any]
) -> int:
    key = "user_id" if table == "user_settings" else "id"
    statement = text(
        f"DELETE FROM {table} WHERE {key} IN"  # noqa: S608 - names from STEPS, values bound
        f" (SELECT {key} FROM {table} WHERE {where} LIMIT {BATCH_ROWS})"
    )
    total = 0
    while True:
        async with sessions() as session:
            deleted: int = (await session.execute(statement, params)).rowcount  # type: ignore[attr-defined]
            await session.commit()
        total += deleted
        if deleted < BATCH_ROWS:
            return total


def _destination_hashes(settings: Settings, user: User) -> list[str]:
    key = settings.security.otp_hash_key
    found = []
    if user.email:
        found.append(hashing.destination_hash(key, OtpChannel.EMAIL.value, user.email))
    if user.phone:
        found.append(hashing.destination_hash(key, OtpChannel.SMS.value, user.phone))
    return found


async def _due(session: AsyncSession, user_id: UUID) -> User | None:
    """The account, locked, when its purge is due; None otherwise."""
    user = await session.scalar(select(User).where(User.id == user_id).with_for_update())
    if user is None or user.status is not UserStatus.DELETED:
        return None
    if user.purge_after is None or user.purge_after > utcnow():
        return None
    return user


async def purge_account(
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis,
    settings: Settings,
    user_id: UUID,
) -> PurgeResult:
    """Purge ``user_id`` if it is deleted and due; safe to run again at any point."""
    async with sessions() as session:
        user = await _due(session, user_id)
        if user is None:
            return PurgeResult(False, {}, "not deleted, not due, or already purged")
        email, phone = user.email, user.phone
        hashes = _destination_hashes(settings, user)
        export_ids = list(
            await session.scalars(select(DataExport.id).where(DataExport.user_id == user_id))
        )
        import_ids = list(
            await session.scalars(select(SessionImport.id).where(SessionImport.user_id == user_id))
        )
    folder = Path(settings.exports.dir)
    for export_id in export_ids:
        remove_files(folder, export_id)
    # Uploaded transcripts not read yet (a read one is deleted by its job already).
    for import_id in import_ids:
        remove_upload(settings, import_id)
    params = {"user_id": user_id}
    rows: dict[str, int] = {}
    for table, where in STEPS:
        rows[table] = rows.get(table, 0) + await _delete_batches(sessions, table, where, params)
    if hashes:
        rows["otp_requests"] = await _delete_batches(
            sessions, "otp_requests", "destination_hash = ANY(:hashes)", {"hashes": hashes}
        )
    await _forget_in_redis(redis, user_id)
    async with sessions() as session:
        user = await _due(session, user_id)
        if user is None:  # pragma: no cover - nothing else purges or restores a due account
            return PurgeResult(False, rows, "changed during the purge")
        await _scrub_audit_log(session, user_id, [v for v in (email, phone) if v])
        await session.delete(user)
        session.add(
            AuditLogEntry(
                actor="system:privacy",
                action="users.purge",
                target=f"user:{user_id}",
                details={"rows": rows},
            )
        )
        await session.commit()
    rows["users"] = 1
    log.info("account_purged", user_id=str(user_id), rows=rows)
    return PurgeResult(True, rows)


async def _scrub_audit_log(session: AsyncSession, user_id: UUID, addresses: list[str]) -> None:
    """The audit log names admins by email or phone: name this account by id instead."""
    replacement = f"user:{user_id}"
    await session.execute(
        text(
            "UPDATE audit_log SET actor = :replacement"
            " WHERE actor_id = :user_id OR lower(actor) = ANY(:addresses)"
        ),
        {
            "replacement": replacement,
            "user_id": user_id,
            "addresses": [a.lower() for a in addresses],
        },
    )
    for address in addresses:
        # Any case; the address is matched literally (every other character escaped).
        pattern = re.escape(address)
        await session.execute(
            text(
                "UPDATE audit_log SET"
                " details = regexp_replace(details::text, :pattern, :replacement, 'gi')::jsonb,"
                " target = regexp_replace(target, :pattern, :replacement, 'gi')"
                " WHERE details::text ~* :pattern OR target ~* :pattern"
            ),
            {"pattern": pattern, "replacement": replacement},
        )


async def _forget_in_redis(redis: Redis, user_id: UUID) -> None:
    """The account's realtime history (frames quote its messages) and event numbering."""
    try:
        await redis.delete(*user_keys(user_id))
    except RedisError as exc:  # the history expires by itself within realtime.history_seconds
        log.warning("purge_redis_failed", user_id=str(user_id), error=str(exc))
