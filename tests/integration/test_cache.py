"""The read cache on a real Redis: invalidation by version, own writes visible at once, hit/miss
figures, and one loader call for a stampede of cold reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller
from wingman.config import CacheSettings, Settings
from wingman.db.models import ChatSession
from wingman.server.cache import ReadCache, invalidate_user
from wingman.server.metrics import CACHE_REQUESTS
from wingman.server.redis_mux import RedisMux


class Page(msgspec.Struct):
    items: list[str]


@pytest.fixture
async def redis_cache(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis.effective_cache_url)
    try:
        yield client
    finally:
        await client.aclose()


def counted(cache: str, result: str) -> float:
    return CACHE_REQUESTS.labels(cache, result)._value.get()


class Loader:
    """Counts its calls; each call returns the current ``value`` after ``delay`` seconds."""

    def __init__(self, value: list[str], delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0

    async def __call__(self) -> Page:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return Page(items=list(self.value))


@pytest.mark.parametrize("pipelined", [False, True], ids=["redis-py", "mux"])
async def test_hit_after_miss_and_a_bump_invalidates(
    redis_cache: Redis, settings: Settings, pipelined: bool
) -> None:
    mux = RedisMux(settings.redis.effective_cache_url) if pipelined else None
    cache = ReadCache(redis_cache, CacheSettings(), mux=mux)
    user = uuid4()
    load = Loader(["a"])
    hits, misses = counted("unit", "hit"), counted("unit", "miss")

    assert await cache.get_or_load("unit", user, "k", load, Page) == Page(["a"])
    load.value = ["b"]
    # Cached: the loader is not asked again, the old value is served.
    assert await cache.get_or_load("unit", user, "k", load, Page) == Page(["a"])
    assert load.calls == 1
    assert (counted("unit", "hit") - hits, counted("unit", "miss") - misses) == (1, 1)

    await invalidate_user(redis_cache, user)
    assert await cache.get_or_load("unit", user, "k", load, Page) == Page(["b"])
    assert load.calls == 2
    # Another user's entries are untouched by this user's bump, and vice versa.
    other = uuid4()
    await cache.get_or_load("unit", other, "k", load, Page)
    await invalidate_user(redis_cache, user)
    await cache.get_or_load("unit", other, "k", load, Page)
    assert load.calls == 3
    if mux is not None:
        await mux.close()


async def test_entries_expire(redis_cache: Redis) -> None:
    cache = ReadCache(redis_cache, CacheSettings(ttl_seconds=1))
    user = uuid4()
    load = Loader(["a"])
    await cache.get_or_load("unit", user, "k", load, Page)
    keys = [key async for key in redis_cache.scan_iter(f"wingman:cache:e:unit:{user}:*")]
    assert len(keys) == 1
    assert 0 < await redis_cache.pttl(keys[0]) <= 1000


async def test_disabled_cache_always_loads(redis_cache: Redis) -> None:
    cache = ReadCache(redis_cache, CacheSettings(enabled=False))
    load = Loader(["a"])
    user = uuid4()
    for _ in range(3):
        await cache.get_or_load("unit", user, "k", load, Page)
    assert load.calls == 3


async def test_stampede_on_a_cold_key_makes_one_loader_call(
    redis_cache: Redis, settings: Settings
) -> None:
    # Two caches with their own clients stand for two web processes.
    other = Redis.from_url(settings.redis.effective_cache_url)
    first, second = ReadCache(redis_cache, CacheSettings()), ReadCache(other, CacheSettings())
    user = uuid4()
    load = Loader(["hot"], delay=0.2)
    try:
        results = await asyncio.gather(
            *(
                (first if n % 2 else second).get_or_load("unit", user, "hot", load, Page)
                for n in range(20)
            )
        )
    finally:
        await other.aclose()
    assert load.calls == 1
    assert all(result == Page(["hot"]) for result in results)


async def test_a_failing_loader_frees_the_waiters(redis_cache: Redis) -> None:
    cache = ReadCache(redis_cache, CacheSettings(lock_seconds=5))
    user = uuid4()
    calls = 0

    async def missing() -> Page:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise LookupError("gone")

    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(
        *(cache.get_or_load("unit", user, "gone", missing, Page) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(result, LookupError) for result in results)
    # Waiters noticed the lock go and tried themselves, well before the 5 s lock ran out.
    assert calls >= 2
    assert asyncio.get_running_loop().time() - started < 2


async def test_own_writes_are_visible_on_the_next_read(
    client: AsyncTestClient[Litestar], alice: Caller
) -> None:
    created = await client.post("/api/v1/sessions", json={"title": "one"}, headers=alice.headers)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]

    async def titles() -> list[str]:
        page = await client.get("/api/v1/sessions", headers=alice.headers)
        assert page.status_code == 200
        return [item["title"] for item in page.json()["items"]]

    assert await titles() == ["one"]
    detail = await client.get(f"/api/v1/sessions/{session_id}", headers=alice.headers)
    assert detail.json()["session"]["title"] == "one"

    patched = await client.patch(
        f"/api/v1/sessions/{session_id}", json={"title": "two"}, headers=alice.headers
    )
    assert patched.status_code == 200
    assert await titles() == ["two"]
    detail = await client.get(f"/api/v1/sessions/{session_id}", headers=alice.headers)
    assert detail.json()["session"]["title"] == "two"

    second = await client.post("/api/v1/sessions", json={"title": "three"}, headers=alice.headers)
    assert await titles() == ["three", "two"]

    deleted = await client.delete(f"/api/v1/sessions/{session_id}", headers=alice.headers)
    assert deleted.status_code == 204
    assert await titles() == ["three"]
    gone = await client.get(f"/api/v1/sessions/{session_id}", headers=alice.headers)
    assert gone.status_code == 404
    assert second.status_code == 201


async def test_reads_are_cached_until_invalidated(
    client: AsyncTestClient[Litestar], alice: Caller, engine: AsyncEngine, redis_cache: Redis
) -> None:
    created = await client.post("/api/v1/sessions", json={"title": "cached"}, headers=alice.headers)
    session_id = UUID(created.json()["id"])
    hits = counted("sessions", "hit")
    assert (await client.get("/api/v1/sessions", headers=alice.headers)).status_code == 200

    # A change behind the API's back (as a worker makes it) is not seen until invalidated ...
    async with engine.begin() as connection:
        await connection.execute(
            update(ChatSession).where(ChatSession.id == session_id).values(title="by worker")
        )
    page = await client.get("/api/v1/sessions", headers=alice.headers)
    assert page.json()["items"][0]["title"] == "cached"
    assert counted("sessions", "hit") - hits == 1

    # ... and is, right after the worker's invalidate_user.
    await invalidate_user(redis_cache, alice.id)
    page = await client.get("/api/v1/sessions", headers=alice.headers)
    assert page.json()["items"][0]["title"] == "by worker"


async def test_failed_writes_do_not_bump(
    client: AsyncTestClient[Litestar], alice: Caller, redis_cache: Redis
) -> None:
    key = f"wingman:cache:v:{alice.id}"
    await client.post("/api/v1/sessions", json={"title": "x"}, headers=alice.headers)
    version = await redis_cache.get(key)
    refused = await client.post("/api/v1/sessions", json={"title": 5}, headers=alice.headers)
    assert refused.status_code in {400, 422}
    assert await redis_cache.get(key) == version
