"""AI fixtures: a database and a queue Redis of their own, callers, and a reply runtime.

The reconciler scans every in-flight AI message of its database, and workers take every job of
their queue; a separate database and Redis database keep other tests' queued replies out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller, create_caller
from tests.support.openai_server import OpenAIServer
from tests.support.services import PrivateServices
from wingman.app import create_app
from wingman.config import (
    AiSettings,
    OfflineProviderSettings,
    QueueSettings,
    RedisSettings,
    Settings,
)
from wingman.db.migrations import upgrade_to_head
from wingman.domain.ai.generation import Providers, ReplyDeps
from wingman.domain.ai.offline import OfflineProvider
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.realtime.events import EventBus, decode_frame, history_key
from wingman.server.database import autocommit_engine, create_engine, session_maker

AI_DATABASE = "wingman_ai"
AI_REDIS_DB = 3


@pytest.fixture(scope="session")
def ai_settings(services: PrivateServices) -> Settings:
    services.postgres.ensure_database(AI_DATABASE)
    upgrade_to_head(services.postgres.url(AI_DATABASE))
    base = services.settings(AI_DATABASE)
    # Fast failure detection: a killed worker's job is swept after a 2 s heartbeat lapse. The
    # web side enqueues with these job options, so they belong in the shared settings.
    queues = dict(base.worker.queues)
    queues["ai"] = QueueSettings(concurrency=50, timeout=60, retries=3, heartbeat=2)
    return msgspec.structs.replace(
        base,
        worker=msgspec.structs.replace(
            base.worker, queues=queues, sweep_seconds=1, shutdown_grace=5
        ),
        redis=RedisSettings(
            queue_url=services.redis_queue.url(AI_REDIS_DB), cache_url=services.redis_cache.url()
        ),
        ai=AiSettings(
            offline=OfflineProviderSettings(token_interval_ms=0),
            retry_delay=0.05,
            retry_max_delay=2.0,
        ),
    )


@pytest.fixture
async def ai_redis(ai_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(ai_settings.redis.queue_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
async def ai_engine(ai_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(ai_settings.database, "wingman-ai-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def ai_app(ai_settings: Settings) -> Litestar:
    return create_app(ai_settings)


@pytest.fixture
async def ai_client(ai_app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=ai_app) as client:
        yield client


@pytest.fixture
async def user(ai_engine: AsyncEngine, ai_settings: Settings) -> Caller:
    return await create_caller(ai_engine, ai_settings)


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Harness:
    """What most AI tests use together: the app's client, settings, database, Redis, a user."""

    client: AsyncTestClient[Litestar]
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    user: Caller

    def deps(self, openai: Any = None) -> ReplyDeps:
        return make_deps(self.settings, self.engine, self.redis, openai)


@pytest.fixture
def ai(
    ai_client: AsyncTestClient[Litestar],
    ai_settings: Settings,
    ai_engine: AsyncEngine,
    ai_redis: Redis,
    user: Caller,
) -> Harness:
    return Harness(ai_client, ai_settings, ai_engine, ai_redis, user)


def make_deps(
    settings: Settings, engine: AsyncEngine, redis: Redis, openai: Any = None
) -> ReplyDeps:
    return ReplyDeps(
        settings=settings.ai,
        db_sessions=session_maker(engine),
        autocommit_sessions=session_maker(autocommit_engine(engine, settings.database)),
        catalog=CatalogCache(),
        events=EventBus(redis, history_size=1000, history_seconds=600),
        providers=Providers(OfflineProvider(0), openai),
        on_change=_ignore,
    )


async def _ignore(user_id: UUID) -> None:
    return None


async def start_session(
    client: AsyncTestClient[Litestar], caller: Caller, **body: Any
) -> dict[str, Any]:
    response = await client.post("/api/v1/sessions", json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def send(
    client: AsyncTestClient[Litestar], caller: Caller, session_id: str, content: str
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/sessions/{session_id}/messages", json={"content": content}, headers=caller.headers
    )
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


async def user_events(redis: Redis, user_id: UUID) -> list[Any]:
    """Every retained event of the user, oldest first (ids start where the user's numbering
    started, not at 1: see domain/realtime/events.py)."""
    return [decode_frame(frame) for frame in await redis.zrange(history_key(user_id), 0, -1)]


def assemble(events: list[Any], message_id: str) -> str:
    """The text a client shows after applying the deltas of ``message_id`` in order."""
    text = ""
    for event in events:
        if event.type == "message.delta" and event.data["message_id"] == message_id:
            offset = event.data["offset"]
            text = text[:offset] + event.data["text"]
    return text
