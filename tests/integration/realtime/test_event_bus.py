"""The event bus on real Redis: numbering, fan-out, history and resync decisions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from redis.asyncio import Redis

from wingman.config import Settings
from wingman.db.models import MessageSender, ProcessingStatus
from wingman.domain.chat.schemas import MessageOut
from wingman.domain.realtime.event_frames import MessageFailed
from wingman.domain.realtime.events import (
    EventBus,
    decode_frame,
    final_key,
    history_key,
    user_channel,
)
from wingman.server.redis_mux import RedisMux


@pytest.fixture(params=["redis-py", "pipelined"])
async def bus(
    request: pytest.FixtureRequest, redis_queue: Redis, settings: Settings
) -> AsyncIterator[EventBus]:
    """The bus publishing through redis-py, and through the pipelined connection (as the web
    and the workers do); every test runs with both."""
    mux = RedisMux(settings.redis.queue_url) if request.param == "pipelined" else None
    yield EventBus(redis_queue, history_size=5, history_seconds=60, mux=mux)
    if mux is not None:
        await mux.close()


async def test_ids_increase_per_user_and_frames_reach_the_channel(
    bus: EventBus, settings: Settings
) -> None:
    user, other = uuid4(), uuid4()
    listener = Redis.from_url(settings.redis.queue_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(user_channel(user))
    try:
        ids = [await bus.publish(user, "message.delta", {"n": n}) for n in range(3)]
        first = ids[0]
        assert ids == [first, first + 1, first + 2]
        # A new sequence starts at the server's clock in microseconds, not at 1.
        assert abs(first - time.time() * 1_000_000) < 600 * 1_000_000
        assert await bus.publish(other, "session.updated", {}) > first
        received = []
        async with asyncio.timeout(5):
            while len(received) < 3:
                # None for the subscribe confirmation (and on a poll timeout): keep reading.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    received.append(decode_frame(message["data"]))
        assert [(f.event_id, f.type, f.data) for f in received] == [
            (first, "message.delta", {"n": 0}),
            (first + 1, "message.delta", {"n": 1}),
            (first + 2, "message.delta", {"n": 2}),
        ]
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def test_replay_returns_exactly_the_missed_frames(bus: EventBus) -> None:
    user = uuid4()
    ids = [await bus.publish(user, "message.delta", {"n": n}) for n in range(4)]
    replay = await bus.replay(user, ids[1])
    assert not replay.resync_required
    assert [decode_frame(f).event_id for f in replay.frames] == ids[2:]
    up_to_date = await bus.replay(user, ids[3])
    assert (up_to_date.frames, up_to_date.resync_required) == ([], False)


async def test_replay_asks_for_resync_when_the_gap_is_not_retained(bus: EventBus) -> None:
    user = uuid4()
    # The history keeps the newest 5: ids[3:].
    ids = [await bus.publish(user, "message.delta", {"n": n}) for n in range(8)]
    assert (await bus.replay(user, ids[1])).resync_required
    kept = await bus.replay(user, ids[2])
    assert [decode_frame(f).event_id for f in kept.frames] == ids[3:]
    # An id never issued (ahead of the sequence) cannot be resumed either.
    assert (await bus.replay(user, ids[-1] + 1)).resync_required
    assert (await bus.replay(uuid4(), 1)).resync_required


async def test_concurrent_publishers_never_share_an_id(bus: EventBus) -> None:
    user = uuid4()
    ids: list[int] = []
    for _ in range(4):  # batches: the fixture's pool holds at most 100 connections
        ids += await asyncio.gather(*(bus.publish(user, "message.delta", {}) for _ in range(50)))
    first = min(ids)
    assert sorted(ids) == list(range(first, first + 200))
    assert await bus.last_event_id(user) == first + 199


async def test_a_lost_sequence_starts_again_above_every_earlier_id(
    bus: EventBus, redis_queue: Redis
) -> None:
    """What a flushed or restarted queue Redis leaves: neither sequence nor history."""
    user = uuid4()
    before = [await bus.publish(user, "message.delta", {"n": n}) for n in range(3)]
    await redis_queue.delete(*[key async for key in redis_queue.scan_iter(f"*{user}*")])
    assert await bus.last_event_id(user) == 0
    # A client holding an id from before is told to resync, not served from nothing.
    assert (await bus.replay(user, before[-1])).resync_required
    after = await bus.publish(user, "message.delta", {"n": 3})
    assert after > before[-1] + 1
    # Resuming from before the loss: the history starts after a gap, so resync again.
    assert (await bus.replay(user, before[-1])).resync_required
    assert not (await bus.replay(user, after)).resync_required


async def test_a_final_event_is_published_once_per_message(
    bus: EventBus, redis_queue: Redis
) -> None:
    """Publishing a message's terminal event again (a retried job, a retry after a lost answer)
    adds nothing: one frame, one id, and the mark lives as long as the history does."""
    user, message, other = uuid4(), uuid4(), uuid4()
    first = await bus.publish(
        user, "message.completed", {"id": str(message)}, once=final_key(message)
    )
    again = await bus.publish(
        user, "message.completed", {"id": str(message)}, once=final_key(message)
    )
    assert again == first
    await bus.publish_final(user, other, _failed(other))
    await bus.publish_final(user, other, _failed(other))
    frames = [decode_frame(f) for f in await redis_queue.zrange(history_key(user), 0, -1)]
    assert [(f.type, f.data["id"]) for f in frames] == [
        ("message.completed", str(message)),
        ("message.failed", str(other)),
    ]
    assert frames[1].event_id == first + 1
    assert 55 <= await redis_queue.ttl(final_key(message)) <= 60


def _failed(message_id: UUID) -> MessageFailed:
    now = datetime.now(UTC)
    return MessageFailed(
        data=MessageOut(
            id=message_id,
            session_id=uuid4(),
            sender=MessageSender.AI,
            content="",
            processing_status=ProcessingStatus.FAILED,
            error="The AI service could not write a reply to this message.",
            reply_to_id=None,
            idempotency_key=None,
            created_at=now,
            completed_at=now,
        )
    )
