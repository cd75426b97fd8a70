"""Fixtures for tests that drive the application in-process (real PostgreSQL and Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller, create_caller
from tests.support.ratelimits import clear_rate_limit_counts, set_rate_limits
from wingman.app import create_app
from wingman.config import Settings
from wingman.db.models import UserRole
from wingman.server.database import create_engine


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


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the shared database, for fixtures that write rows directly."""
    engine = create_engine(settings.database, "wingman-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def alice(engine: AsyncEngine, settings: Settings) -> Caller:
    return await create_caller(engine, settings)


@pytest.fixture
async def bob(engine: AsyncEngine, settings: Settings) -> Caller:
    return await create_caller(engine, settings)


@pytest.fixture
async def admin(engine: AsyncEngine, settings: Settings) -> Caller:
    return await create_caller(engine, settings, role=UserRole.ADMIN)


@pytest.fixture
async def fresh_limits(settings: Settings) -> AsyncIterator[None]:
    """Empty windows before, default allowances after."""
    await clear_rate_limit_counts(settings)
    try:
        yield
    finally:
        await set_rate_limits(settings, {})
        await clear_rate_limit_counts(settings)
