"""The retention sweep in a real heavy worker: old rows go, recent ones stay, batches bounded."""

from __future__ import annotations

import random
import subprocess
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller
from tests.support.jobs import wait_until_done
from wingman.config import Settings
from wingman.db.models import (
    ChatSession,
    ImportFormat,
    ImportStatus,
    Message,
    MessageSender,
    OtpChannel,
    OtpRequest,
    ProcessingStatus,
    RefreshToken,
    SessionEvent,
    SessionImport,
    utcnow,
)
from wingman.ops.health import retention_row
from wingman.queues import create_queue, enqueue

BATCH = 3


def id_at(moment: datetime) -> UUID:
    """A UUIDv7 made at ``moment`` (its first 48 bits are the milliseconds)."""
    millis = int(moment.timestamp() * 1000)
    rand_a, rand_b = random.getrandbits(12), random.getrandbits(62)
    return UUID(int=(millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)


async def seed(engine: AsyncEngine, user_id: UUID, now: datetime) -> dict[str, tuple[set, set]]:
    """Rows past and inside each horizon: kind -> (ids that must go, ids that must stay)."""
    old, recent = now - timedelta(days=40), now - timedelta(days=1)
    session_id = id_at(now)
    plan: dict[str, tuple[set, set]] = {}
    async with engine.begin() as connection:
        await connection.execute(
            insert(ChatSession).values(id=session_id, user_id=user_id, message_count=10)
        )
        messages = {moment: [id_at(moment) for _ in range(5)] for moment in (old, recent)}
        await connection.execute(
            insert(Message),
            [
                {
                    "id": message_id,
                    "session_id": session_id,
                    "sender": MessageSender.USER,
                    "content": "x",
                    "processing_status": ProcessingStatus.DONE,
                    "created_at": moment,
                }
                for moment, ids in messages.items()
                for message_id in ids
            ],
        )
        plan["messages"] = (set(messages[old]), set(messages[recent]))
        otp = {moment: [id_at(moment) for _ in range(4)] for moment in (old, recent)}
        await connection.execute(
            insert(OtpRequest),
            [
                {
                    "id": otp_id,
                    "destination_hash": "h",
                    "channel": OtpChannel.EMAIL,
                    "code_hash": "c",
                    "expires_at": moment + timedelta(minutes=10),
                    "created_at": moment,
                }
                for moment, ids in otp.items()
                for otp_id in ids
            ],
        )
        plan["otp_requests"] = (set(otp[old]), set(otp[recent]))
        events = {moment: [id_at(moment) for _ in range(7)] for moment in (old, recent)}
        await connection.execute(
            insert(SessionEvent),
            [
                {
                    "id": event_id,
                    "session_id": session_id,
                    "user_id": user_id,
                    "type": "copied",
                    "created_at": moment,
                }
                for moment, ids in events.items()
                for event_id in ids
            ],
        )
        plan["session_events"] = (set(events[old]), set(events[recent]))
        created_long_ago = now - timedelta(days=90)
        tokens: list[dict[str, Any]] = []
        gone, kept = set(), set()
        for expires, revoked, goes in (
            (now - timedelta(days=40), None, True),  # expired long ago
            (now + timedelta(days=5), now - timedelta(days=35), True),  # revoked long ago
            (now + timedelta(days=5), now - timedelta(days=1), False),  # revoked yesterday
            (now + timedelta(days=5), None, False),  # still valid
            (now - timedelta(days=2), None, False),  # expired recently
        ):
            token_id = id_at(created_long_ago)
            (gone if goes else kept).add(token_id)
            tokens.append(
                {
                    "id": token_id,
                    "user_id": user_id,
                    "family_id": token_id,
                    "token_hash": f"t-{token_id}",
                    "expires_at": expires,
                    "revoked_at": revoked,
                    "created_at": created_long_ago,
                }
            )
        await connection.execute(insert(RefreshToken), tokens)
        plan["refresh_tokens"] = (gone, kept)
        imports: dict[str, set[UUID]] = {"gone": set(), "kept": set()}
        # The sweep finds rows by their id's time, the heavy worker's minutely reconciler fails
        # imports queued for a day by ``created_at``; the queued row is old to the first and
        # young to the second, or the reconciler could fail it (and make it sweepable) first.
        for moment, created, status, fate in (
            (old, old, ImportStatus.DONE, "gone"),
            (old, old, ImportStatus.FAILED, "gone"),
            (old, now, ImportStatus.QUEUED, "kept"),  # still owed to its user: never swept
            (recent, recent, ImportStatus.DONE, "kept"),
        ):
            import_id = id_at(moment)
            imports[fate].add(import_id)
            await connection.execute(
                insert(SessionImport).values(
                    id=import_id,
                    session_id=session_id,
                    user_id=user_id,
                    format=ImportFormat.TEXT,
                    me="Me",
                    size_bytes=1,
                    status=status,
                    created_at=created,
                )
            )
        plan["session_imports"] = (imports["gone"], imports["kept"])
    plan["_session"] = ({session_id}, set())
    return plan


async def test_the_sweep_removes_only_rows_past_their_horizon_in_bounded_batches(
    *,
    hk_client: AsyncTestClient[Litestar],
    operator: Caller,
    owner: Caller,
    hk_engine: AsyncEngine,
    hk_settings: Settings,
    heavy_worker: subprocess.Popen[bytes],
) -> None:
    config = {"messages_days": 10, "batch_size": BATCH}
    response = await hk_client.put(
        "/api/v1/admin/config/retention", json=config, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    plan = await seed(hk_engine, owner.id, utcnow())
    queue = create_queue(hk_settings, "heavy")
    try:
        job = await enqueue(queue, hk_settings, "retention_sweep")
        assert job is not None
        await wait_until_done(job)
    finally:
        await queue.disconnect()
    assert job.status == "complete", job.error
    result = job.result
    tables = {
        "messages": Message,
        "otp_requests": OtpRequest,
        "session_events": SessionEvent,
        "refresh_tokens": RefreshToken,
        "session_imports": SessionImport,
    }
    async with hk_engine.connect() as connection:
        for kind, model in tables.items():
            gone, kept = plan[kind]
            present = set(
                (await connection.scalars(select(model.id).where(model.id.in_(gone | kept)))).all()
            )
            assert present == kept, kind
            assert result["removed"][kind] >= len(gone), kind
            assert 1 <= result["largest_batch"][kind] <= BATCH, kind
            # Every row of the range was looked at, BATCH at a time.
            assert result["batches"][kind] >= (len(gone) + BATCH - 1) // BATCH, kind
        (session_id,) = plan["_session"][0]
        count = await connection.scalar(
            select(ChatSession.message_count).where(ChatSession.id == session_id)
        )
    assert count == 5

    row = await retention_row(hk_settings)
    assert row.state == "ok"
    assert row.figures["removed"] == result["removed"]
    assert f"{result['removed']['messages']} messages" in row.value
