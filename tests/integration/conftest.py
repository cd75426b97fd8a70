"""Fixtures for tests that drive the application in-process (real PostgreSQL and Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from wingman.app import create_app
from wingman.config import Settings


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
async def redis_queue(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis.queue_url)
    try:
        yield client
    finally:
        await client.aclose()
