"""The purge leaves nothing of the account: every table of the models is walked afterwards for
the account's id, email and phone, so a table added later cannot be missed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.privacy.conftest import count_rows, seed_chat
from tests.support.accounts import Caller
from wingman.config import Settings
from wingman.db.models import (
    AuditLogEntry,
    DataExport,
    DataExportStatus,
    OtpChannel,
    metadata,
)
from wingman.domain.accounts.services import OtpService, RefreshTokenService
from wingman.domain.privacy import purge
from wingman.domain.privacy.exports import export_dir
from wingman.domain.realtime.events import EventBus, user_keys
from wingman.server.database import session_maker

AUDIT_TABLE = "audit_log"


async def traces(engine: AsyncEngine, user_id: UUID, needles: list[str]) -> list[str]:
    """Every (table.column) of the models holding the user's id (outside the audit log, which
    keeps it by design) or any of ``needles`` (email, phone), anywhere, in any case."""
    found = []
    async with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for column in table.columns:
                as_text = f'"{column.name}"::text'
                checks = [
                    f"lower({as_text}) LIKE '%' || lower(CAST(:n{i} AS text)) || '%'"
                    for i in range(len(needles))
                ]
                if table.name != AUDIT_TABLE:
                    checks.append(f"{as_text} LIKE '%' || CAST(:id AS text) || '%'")
                sql = f"SELECT count(*) FROM {table.name} WHERE " + " OR ".join(checks)  # noqa: S608
                params = {f"n{i}": needle for i, needle in enumerate(needles)}
                params["id"] = str(user_id)
                if (await connection.execute(text(sql), params)).scalar_one():
                    found.append(f"{table.name}.{column.name}")
    return found


async def test_a_purge_leaves_no_row_and_no_address_of_the_account(
    privacy_engine: AsyncEngine,
    privacy_settings: Settings,
    privacy_redis: Redis,
    alice: Caller,
    bob: Caller,
) -> None:
    engine, settings = privacy_engine, privacy_settings
    email, phone = f"purged-{time.time_ns()}@example.org", f"+4915{time.time_ns() % 10**9:09d}"
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET email = :e, phone = :p, display_name = 'Alice' WHERE id = :u"),
            {"e": email, "p": phone, "u": alice.id},
        )
    await seed_chat(engine, alice.id, sessions=3, messages=4000, marker="alice-words")
    await seed_chat(engine, bob.id, sessions=1, messages=100, marker="bob-words")
    bob_before = await count_rows(engine, bob.id)
    sessions = session_maker(engine)
    async with sessions() as session:
        await RefreshTokenService(session, settings).create(alice.id, "phone app")
        otp = OtpService(session, settings)
        await otp.issue(OtpChannel.EMAIL, email, "192.0.2.1")  # commits
        await otp.issue(OtpChannel.SMS, phone, "192.0.2.1")
        ready = DataExport(
            user_id=alice.id, status=DataExportStatus.READY, file_path="x.zip", size_bytes=1
        )
        session.add(ready)
        # An admin's actions are audited under their address.
        session.add(
            AuditLogEntry(
                actor=email.upper(),
                actor_id=alice.id,
                action="users.update",
                target=f"user:{bob.id}",
                details={"note": f"asked by {email}"},
            )
        )
        await session.commit()
    export_file = export_dir(settings) / f"{ready.id}.zip"
    export_file.write_bytes(b"archive")
    events = EventBus(privacy_redis, history_size=100, history_seconds=600)
    await events.publish(alice.id, "message.created", {"content": "alice-words"})

    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE users SET status = 'deleted', deleted_at = now(), purge_after = :t"
                " WHERE id = :u"
            ),
            {"t": datetime.now(UTC) - timedelta(seconds=1), "u": alice.id},
        )
    result = await purge.purge_account(sessions, privacy_redis, settings, alice.id)
    assert result.purged
    assert result.rows["messages"] == 12_000
    assert result.rows["otp_requests"] == 2

    assert await traces(engine, alice.id, [email, phone, "alice-words"]) == []
    assert not export_file.exists()
    assert await privacy_redis.exists(*user_keys(alice.id)) == 0
    # What remains is the purge's own record, by id only.
    async with engine.connect() as connection:
        purges = (
            await connection.execute(
                select(AuditLogEntry.actor, AuditLogEntry.details).where(
                    AuditLogEntry.action == "users.purge",
                    AuditLogEntry.target == f"user:{alice.id}",
                )
            )
        ).all()
        renamed = await connection.scalar(
            select(func.count()).where(AuditLogEntry.actor == f"user:{alice.id}")
        )
    assert len(purges) == 1
    assert renamed == 1
    # Bob is untouched, and a second run finds nothing to do.
    assert await count_rows(engine, bob.id) == bob_before
    again = await purge.purge_account(sessions, privacy_redis, settings, alice.id)
    assert not again.purged
