"""A queue Redis that lost its data, with sockets open: FLUSHALL, and a restart without its files.

The test has a queue Redis of its own (the session's is shared with every other test). Whatever
happens, an open socket gets the events published afterwards, preceded by ``resync_required``
when its numbering broke; a client resuming from an id of before is told to resync. Never is an
event skipped in silence.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from tests.integration.realtime.conftest import (
    close_code,
    open_socket,
    receive,
    send,
    serving,
    token_of,
)
from tests.support.accounts import Caller
from tests.support.services import private_redis
from wingman.config import RedisSettings, Settings
from wingman.devstack.redis import RedisServer
from wingman.domain.realtime.events import EventBus
from wingman.domain.realtime.protocol import CloseCode


@pytest.fixture(scope="module")
def queue_redis() -> Iterator[RedisServer]:
    with private_redis("wingman-queue-redis-") as server:
        yield server


@pytest.fixture(scope="module")
async def loss_url(ws_settings: Settings, queue_redis: RedisServer) -> AsyncIterator[str]:
    redis = RedisSettings(queue_url=queue_redis.url(), cache_url=ws_settings.redis.cache_url)
    async with serving(msgspec.structs.replace(ws_settings, redis=redis)) as url:
        yield url


@pytest.fixture
async def queue(queue_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(queue_redis.url())
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def private_bus(queue: Redis, ws_settings: Settings) -> EventBus:
    return EventBus(
        queue,
        history_size=ws_settings.realtime.history_size,
        history_seconds=ws_settings.realtime.history_seconds,
    )


async def next_frame(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    """The next frame that is not a heartbeat ping (answered, as a client does)."""
    while (frame := await receive(ws, within))["type"] == "ping":
        await send(ws, {"type": "pong"})
    return frame


async def start(ws: ClientConnection, last_event_id: int | None = None) -> dict[str, Any]:
    """``hello``, then ``resume``; returns the answer to ``resume``."""
    assert (await next_frame(ws))["type"] == "hello"
    await send(ws, {"type": "resume", "last_event_id": last_event_id})
    return await next_frame(ws)


async def test_flushall_with_sockets_open_never_skips_an_event(
    loss_url: str, caller: Caller, private_bus: EventBus, queue: Redis
) -> None:
    async with (
        open_socket(loss_url, token_of(caller)) as phone,
        open_socket(loss_url, token_of(caller)) as laptop,
    ):
        for ws in (phone, laptop):
            assert (await start(ws))["type"] == "resumed"
        before = [await private_bus.publish(caller.id, "message.delta", {"n": n}) for n in (0, 1)]
        for ws in (phone, laptop):
            assert [(await next_frame(ws))["event_id"] for _ in before] == before

        await queue.flushall()

        # A client that resumes before anything new was published: its id is ahead.
        async with open_socket(loss_url, token_of(caller)) as tablet:
            assert await start(tablet, last_event_id=before[-1]) == {
                "type": "resync_required",
                "data": {"event_id": 0},
            }
        after = await private_bus.publish(caller.id, "message.completed", {"n": 2})
        assert after > before[-1] + 1
        for ws in (phone, laptop):
            assert await next_frame(ws) == {
                "type": "resync_required",
                "data": {"event_id": after - 1},
            }
            frame = await next_frame(ws)
            assert (frame["event_id"], frame["data"]) == (after, {"n": 2})
        # Numbering carries on by one from there, with nothing more to report.
        following = await private_bus.publish(caller.id, "message.delta", {"n": 3})
        for ws in (phone, laptop):
            assert (await next_frame(ws))["event_id"] == following == after + 1
        # A client still holding an id from before the flush resyncs.
        async with open_socket(loss_url, token_of(caller)) as tablet:
            assert (await start(tablet, last_event_id=before[-1]))["type"] == "resync_required"


async def test_restart_without_data_closes_sockets_and_clients_resync(
    loss_url: str, caller: Caller, private_bus: EventBus, queue_redis: RedisServer
) -> None:
    async with open_socket(loss_url, token_of(caller)) as ws:
        assert (await start(ws))["type"] == "resumed"
        before = await private_bus.publish(caller.id, "message.delta", {"n": 0})
        assert (await next_frame(ws))["event_id"] == before

        queue_redis.stop()
        wipe(queue_redis.dir)
        # The subscription broke: frames may have been missed, so the socket is closed.
        assert await close_code(ws) == CloseCode.TRY_AGAIN_LATER
        queue_redis.start()
        restarted = time.monotonic()
        # The publisher's pooled connections died with the server.
        await private_bus.redis.connection_pool.disconnect()

    # The client reconnects with backoff until the server subscribed again, then resumes.
    while True:
        async with open_socket(loss_url, token_of(caller)) as ws:
            answer = await start_or_none(ws, before)
            if answer is not None:
                break
        assert time.monotonic() - restarted < 15, "the server did not recover"
    assert answer == {"type": "resync_required", "data": {"event_id": 0}}
    async with open_socket(loss_url, token_of(caller)) as ws:
        assert (await start(ws, before))["type"] == "resync_required"
        after = await private_bus.publish(caller.id, "message.delta", {"n": 1})
        assert after > before
        assert (await next_frame(ws))["event_id"] == after


async def start_or_none(ws: ClientConnection, last_event_id: int) -> dict[str, Any] | None:
    """The answer to ``resume``, or None when the server closed the socket (1013: still
    reconnecting to Redis)."""
    hello = await next_frame(ws)
    if hello["type"] != "hello":
        return None
    await send(ws, {"type": "resume", "last_event_id": last_event_id})
    return await next_frame(ws)


def wipe(folder: Path) -> None:
    """Remove a stopped Redis' data files (the append-only folder and any snapshot)."""
    shutil.rmtree(folder / "appendonlydir", ignore_errors=True)
    (folder / "dump.rdb").unlink(missing_ok=True)
