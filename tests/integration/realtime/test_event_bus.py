"""The event bus on real Redis: numbering, fan-out, history and resync decisions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from wingman.config import Settings
from wingman.domain.realtime.events import EventBus, decode_frame, user_channel
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
        assert ids == [1, 2, 3]
        assert await bus.publish(other, "session.updated", {}) == 1
        received = []
        async with asyncio.timeout(5):
            while len(received) < 3:
                # None for the subscribe confirmation (and on a poll timeout): keep reading.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    received.append(decode_frame(message["data"]))
        assert [(f.event_id, f.type, f.data) for f in received] == [
            (1, "message.delta", {"n": 0}),
            (2, "message.delta", {"n": 1}),
            (3, "message.delta", {"n": 2}),
        ]
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def test_replay_returns_exactly_the_missed_frames(bus: EventBus) -> None:
    user = uuid4()
    for n in range(4):
        await bus.publish(user, "message.delta", {"n": n})
    replay = await bus.replay(user, 2)
    assert not replay.resync_required
    assert [decode_frame(f).event_id for f in replay.frames] == [3, 4]
    up_to_date = await bus.replay(user, 4)
    assert (up_to_date.frames, up_to_date.resync_required) == ([], False)


async def test_replay_asks_for_resync_when_the_gap_is_not_retained(bus: EventBus) -> None:
    user = uuid4()
    for n in range(8):  # history keeps the newest 5: ids 4..8
        await bus.publish(user, "message.delta", {"n": n})
    assert (await bus.replay(user, 2)).resync_required
    kept = await bus.replay(user, 3)
    assert [decode_frame(f).event_id for f in kept.frames] == [4, 5, 6, 7, 8]
    # An id from the future (numbering restarted) cannot be resumed either.
    assert (await bus.replay(user, 99)).resync_required
    assert (await bus.replay(uuid4(), 1)).resync_required


async def test_concurrent_publishers_never_share_an_id(bus: EventBus) -> None:
    user = uuid4()
    ids: list[int] = []
    for _ in range(4):  # batches: the fixture's pool holds at most 100 connections
        ids += await asyncio.gather(*(bus.publish(user, "message.delta", {}) for _ in range(50)))
    assert sorted(ids) == list(range(1, 201))
    assert await bus.last_event_id(user) == 200
