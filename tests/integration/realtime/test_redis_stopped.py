"""A queue Redis that is stopped while the web process serves: answers, not crashes.

The test has a queue Redis of its own, stopped at the start of each test and started again at
its end. An event that follows a committed change is logged and dropped (the stored rows are
the truth), and a handler whose own Redis call fails answers 503 with Retry-After, the same as
for a database that cannot be reached: a failover of the Redis master looks like this for a few
seconds, and a client must come back rather than report a bug.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from structlog.testing import capture_logs

from tests.support.services import private_redis
from wingman.devstack.redis import RedisServer
from wingman.domain.realtime.event_frames import ExportReady, ExportReadyData
from wingman.domain.realtime.events import EventBus, decode_frame, final_key, history_key
from wingman.server.errors import EXCEPTION_HANDLERS, RETRY_AFTER_SECONDS, problem_details_plugin
from wingman.server.redis import client


@pytest.fixture(scope="module")
def queue_redis() -> Iterator[RedisServer]:
    with private_redis("wingman-stopped-redis-") as server:
        yield server


@pytest.fixture
async def stopped(queue_redis: RedisServer) -> AsyncIterator[Redis]:
    """A client of the queue Redis, whose server is stopped for the test."""
    redis = client(queue_redis.url(), timeout=1)
    try:
        assert await redis.ping()
        queue_redis.stop()
        assert not queue_redis.running()
        yield redis
    finally:
        await redis.aclose()
        queue_redis.start()


def _export_ready() -> ExportReady:
    return ExportReady(
        data=ExportReadyData(id=uuid.uuid4(), download_url="/api/v1/exports/x/download"),
    )


async def test_an_event_after_a_commit_is_logged_and_dropped(stopped: Redis) -> None:
    bus = EventBus(stopped, history_size=10, history_seconds=60)
    with capture_logs() as logs:
        await bus.publish_event_quietly(uuid.uuid4(), _export_ready())
    failures = [entry for entry in logs if entry["event"] == "event_publish_failed"]
    assert len(failures) == 1
    assert failures[0]["event_type"] == "export.ready"
    assert failures[0]["error"]


async def test_a_final_event_is_tried_until_redis_is_back(
    queue_redis: RedisServer, stopped: Redis
) -> None:
    """A reply's terminal event, published while Redis is down (a failover, a restart), goes out
    once Redis is back, within its retry window, instead of being dropped."""
    bus = EventBus(stopped, history_size=10, history_seconds=60)
    user = uuid.uuid4()
    message = uuid.uuid4()
    with capture_logs() as logs:
        publishing = asyncio.create_task(
            bus.publish_final(user, message, _export_ready(), keep_trying_s=20)
        )
        # Its first try meets the stopped server; Redis is back while it keeps trying.
        await asyncio.to_thread(queue_redis.start)
        await asyncio.wait_for(publishing, 20)
    frames = [decode_frame(f) for f in await stopped.zrange(history_key(user), 0, -1)]
    assert [f.type for f in frames] == ["export.ready"]
    assert await stopped.exists(final_key(message))
    published = [e for e in logs if e["event"] == "final_event_published"]
    assert len(published) == 1
    assert published[0]["tries"] > 1
    assert not [e for e in logs if e["event"] == "event_publish_failed"]
    queue_redis.stop()


async def test_a_final_event_that_cannot_be_published_in_time_is_logged(
    stopped: Redis,
) -> None:
    bus = EventBus(stopped, history_size=10, history_seconds=60)
    with capture_logs() as logs:
        await bus.publish_final(uuid.uuid4(), uuid.uuid4(), _export_ready(), keep_trying_s=0.5)
    failures = [entry for entry in logs if entry["event"] == "event_publish_failed"]
    assert len(failures) == 1
    assert failures[0]["tries"] > 1


async def test_a_handler_whose_redis_call_fails_answers_503_with_retry_after(
    stopped: Redis,
) -> None:
    @get("/counter")
    async def counter() -> dict[str, int]:
        return {"n": int(await stopped.incr("counter"))}

    app = Litestar(
        route_handlers=[counter],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        plugins=[problem_details_plugin()],
    )
    async with AsyncTestClient(app=app) as http:
        answer = await http.get("/counter")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == RETRY_AFTER_SECONDS
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"] == "urn:wingman:problem:unavailable"
