"""Setting global config (``rate_limits`` and others) from tests, as ``wingmanctl config set`` does:
store it, commit, announce the change to every process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from wingman.config import Settings
from wingman.domain.catalog.cache import announce_change
from wingman.domain.catalog.services import Actor, ConfigService


async def set_rate_limits(settings: Settings, value: dict[str, Any]) -> None:
    """Store ``value`` (fields left out take their defaults) and tell every process."""
    await set_config(settings, "rate_limits", value)


async def set_config(settings: Settings, key: str, value: dict[str, Any]) -> None:
    """Store global config ``key`` (fields left out take their defaults), tell every process."""
    engine = create_async_engine(settings.database.url)
    try:
        async with AsyncSession(engine) as session:
            await ConfigService(session).set(key, value, Actor("tests"))
            await session.commit()
    finally:
        await engine.dispose()
    redis = Redis.from_url(settings.redis.queue_url)
    try:
        await announce_change(redis, f"config:{key}")
    finally:
        await redis.aclose()


async def clear_rate_limit_counts(settings: Settings) -> None:
    """Forget every window (each test starts with full allowances)."""
    redis = Redis.from_url(settings.redis.queue_url)
    try:
        keys = [key async for key in redis.scan_iter(match="wingman:ratelimit*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@asynccontextmanager
async def roomy_rate_limits(settings: Settings) -> AsyncIterator[None]:
    """Allowances no test reaches, for tests that explore behaviour behind the limits from one
    address; the defaults are stored back afterwards."""
    roomy = {"limit": 1_000_000, "period": "minute"}
    await set_rate_limits(settings, {"anon": roomy, "otp": roomy})
    try:
        yield
    finally:
        await set_rate_limits(settings, {})
