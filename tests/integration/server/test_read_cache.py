"""The read cache on a real Redis: invalidation by version, own writes visible at once, hit/miss
figures, and one loader call for a stampede of cold reads."""

from __future__ import annotations

import asyncio
import time
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
from wingman.app import create_app
from wingman.config import CacheSettings, Settings
from wingman.db.models import ChatSession
from wingman.server.cache import VERSION_SECONDS, ReadCache, invalidate_user
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


@pytest.fixture
async def versions(settings: Settings) -> AsyncIterator[RedisMux]:
    """The pipelined connection to the queue Redis, where versions live."""
    mux = RedisMux(settings.redis.queue_url)
    try:
        yield mux
    finally:
        await mux.close()


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
    redis_cache: Redis, redis_queue: Redis, versions: RedisMux, settings: Settings, pipelined: bool
) -> None:
    mux = RedisMux(settings.redis.effective_cache_url) if pipelined else None
    cache = ReadCache(redis_cache, versions, CacheSettings(), mux=mux)
    user = uuid4()
    load = Loader(["a"])
    hits, misses = counted("unit", "hit"), counted("unit", "miss")

    assert await cache.get_or_load("unit", user, "k", load, Page) == Page(["a"])
    load.value = ["b"]
    # Cached: the loader is not asked again, the old value is served.
    assert await cache.get_or_load("unit", user, "k", load, Page) == Page(["a"])
    assert load.calls == 1
    assert (counted("unit", "hit") - hits, counted("unit", "miss") - misses) == (1, 1)

    await invalidate_user(redis_queue if pipelined else versions, user)
    assert await cache.get_or_load("unit", user, "k", load, Page) == Page(["b"])
    assert load.calls == 2
    # Another user's entries are untouched by this user's bump, and vice versa.
    other = uuid4()
    await cache.get_or_load("unit", other, "k", load, Page)
    await invalidate_user(redis_queue, user)
    await cache.get_or_load("unit", other, "k", load, Page)
    assert load.calls == 3
    if mux is not None:
        await mux.close()


async def test_entries_expire(redis_cache: Redis, versions: RedisMux) -> None:
    cache = ReadCache(redis_cache, versions, CacheSettings(ttl_seconds=1))
    user = uuid4()
    load = Loader(["a"])
    await cache.get_or_load("unit", user, "k", load, Page)
    keys = [key async for key in redis_cache.scan_iter(f"wingman:cache:e:unit:{user}:*")]
    assert len(keys) == 1
    assert 0 < await redis_cache.pttl(keys[0]) <= 1000


async def test_disabled_cache_always_loads(redis_cache: Redis, versions: RedisMux) -> None:
    cache = ReadCache(redis_cache, versions, CacheSettings(enabled=False))
    load = Loader(["a"])
    user = uuid4()
    for _ in range(3):
        await cache.get_or_load("unit", user, "k", load, Page)
    assert load.calls == 3


async def test_stampede_on_a_cold_key_makes_one_loader_call(
    redis_cache: Redis, versions: RedisMux, settings: Settings
) -> None:
    # Two caches with their own clients stand for two web processes.
    other = Redis.from_url(settings.redis.effective_cache_url)
    first = ReadCache(redis_cache, versions, CacheSettings())
    second = ReadCache(other, versions, CacheSettings())
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


async def test_a_failing_loader_frees_the_waiters(redis_cache: Redis, versions: RedisMux) -> None:
    cache = ReadCache(redis_cache, versions, CacheSettings(lock_seconds=5))
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
    client: AsyncTestClient[Litestar], alice: Caller, engine: AsyncEngine, redis_queue: Redis
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
    await invalidate_user(redis_queue, alice.id)
    page = await client.get("/api/v1/sessions", headers=alice.headers)
    assert page.json()["items"][0]["title"] == "by worker"


async def test_failed_writes_do_not_bump(
    client: AsyncTestClient[Litestar], alice: Caller, redis_queue: Redis
) -> None:
    key = f"wingman:cache:v:{alice.id}"
    assert (await client.get("/api/v1/sessions", headers=alice.headers)).status_code == 200
    await client.post("/api/v1/sessions", json={"title": "x"}, headers=alice.headers)
    version = await redis_queue.get(key)
    assert version is not None
    refused = await client.post("/api/v1/sessions", json={"title": 5}, headers=alice.headers)
    assert refused.status_code in {400, 422}
    assert await redis_queue.get(key) == version


# -- versions live where nothing evicts them -------------------------------------------------

JUNK = "test:junk:"


@pytest.fixture
async def tight_cache_redis(redis_cache: Redis) -> AsyncIterator[Redis]:
    """The cache Redis with room for about 2 MB more than it holds, evicting at random.

    Redis's LRU is approximate (it samples keys), so the order it evicts in is not guaranteed;
    random eviction is the harshest order, and makes "a version gone, an older entry kept" likely
    within a few rounds. The settings are restored and the filler removed afterwards."""
    saved = await redis_cache.config_get("maxmemory", "maxmemory-policy")
    used = int((await redis_cache.info("memory"))["used_memory"])
    await redis_cache.config_set("maxmemory", used + 2 * 1024 * 1024)
    await redis_cache.config_set("maxmemory-policy", "allkeys-random")
    try:
        yield redis_cache
    finally:
        await redis_cache.config_set("maxmemory", saved["maxmemory"])
        await redis_cache.config_set("maxmemory-policy", saved["maxmemory-policy"])
        async for key in redis_cache.scan_iter(f"{JUNK}*", count=1000):
            await redis_cache.delete(key)


async def flood(redis: Redis, round_: int) -> None:
    """About 1 MB of unrelated keys: half of what the tight cache Redis has room for."""
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(256):
            pipe.set(f"{JUNK}{round_}:{n}", b"x" * 4096, ex=300)
        await pipe.execute()


@pytest.fixture(params=[True, False], ids=["limiter", "no-limiter"])
def cache_app(request: pytest.FixtureRequest, settings: Settings) -> Litestar:
    """The app with the request limiter (which brings the version) and without it."""
    server = msgspec.structs.replace(settings.server, rate_limits=request.param)
    return create_app(msgspec.structs.replace(settings, server=server))


async def test_no_cached_list_is_older_than_the_last_write_under_eviction(
    cache_app: Litestar, alice: Caller, tight_cache_redis: Redis
) -> None:
    evicted = int((await tight_cache_redis.info("stats"))["evicted_keys"])
    async with AsyncTestClient(app=cache_app) as client:

        async def newest() -> str:
            page = await client.get("/api/v1/sessions", headers=alice.headers)
            assert page.status_code == 200, page.text
            title: str = page.json()["items"][0]["title"]
            return title

        for round_ in range(20):
            written = f"round {round_}"
            created = await client.post(
                "/api/v1/sessions", json={"title": written}, headers=alice.headers
            )
            assert created.status_code == 201, created.text
            # A miss, then a hit: the list is cached under the version the write left.
            assert await newest() == written
            assert await newest() == written
            await flood(tight_cache_redis, round_)
            # Whatever was evicted, no list from before this round's write comes back.
            assert await newest() == written, round_
    assert int((await tight_cache_redis.info("stats"))["evicted_keys"]) > evicted


async def test_versions_start_from_the_clock_and_a_bump_needs_one(
    redis_cache: Redis, redis_queue: Redis, versions: RedisMux
) -> None:
    cache = ReadCache(redis_cache, versions, CacheSettings())
    user = uuid4()
    key = f"wingman:cache:v:{user}"
    # Nothing to bump yet: no key is made (a version made by a bump would start at 1).
    await invalidate_user(versions, user)
    assert await redis_queue.exists(key) == 0

    before_us = time.time_ns() // 1000
    first = int(await cache.version(user))
    assert abs(first - before_us) < 60_000_000  # the queue Redis's clock, in microseconds
    assert 0 < await redis_queue.ttl(key) <= VERSION_SECONDS
    await invalidate_user(versions, user)
    assert int(await cache.version(user)) == first + 1

    # Once it expired, the next one is created from the clock again: past any it had before.
    await redis_queue.delete(key)
    assert int(await cache.version(user)) > first + 1


async def calls(redis: Redis) -> dict[str, int]:
    """Commands the server has run so far, by name (``cmdstat_get``: calls)."""
    stats = await redis.info("commandstats")
    return {name: int(value["calls"]) for name, value in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The commands run between two :func:`calls`, less the ``INFO`` that read the second."""
    changed = {k: v - before.get(k, 0) for k, v in after.items()}
    changed["cmdstat_info"] -= 1
    return {k: v for k, v in changed.items() if v}


async def test_a_cached_read_makes_one_call_to_each_redis(
    client: AsyncTestClient[Litestar], alice: Caller, redis_queue: Redis, redis_cache: Redis
) -> None:
    """The version rides on the limiter's script: a hit costs one call to the queue Redis (that
    script) and one GET on the cache Redis."""
    await client.post("/api/v1/sessions", json={"title": "counted"}, headers=alice.headers)
    assert (await client.get("/api/v1/sessions", headers=alice.headers)).status_code == 200

    queue_before, cache_before = await calls(redis_queue), await calls(redis_cache)
    hits = counted("sessions", "hit")
    assert (await client.get("/api/v1/sessions", headers=alice.headers)).status_code == 200
    assert counted("sessions", "hit") - hits == 1
    queue_after, cache_after = await calls(redis_queue), await calls(redis_cache)

    # Commands a script runs are counted too: one EVALSHA (the limiter's), whose GET read the
    # version; nothing else was called on its own.
    queue = delta(queue_before, queue_after)
    assert queue["cmdstat_evalsha"] == 1
    assert queue["cmdstat_get"] == 1
    assert not {"cmdstat_eval", "cmdstat_set", "cmdstat_incr"} & queue.keys()
    assert delta(cache_before, cache_after) == {"cmdstat_get": 1}


async def test_a_missed_read_makes_two_calls_to_the_cache_redis(
    client: AsyncTestClient[Litestar], alice: Caller, redis_cache: Redis
) -> None:
    """A miss is one script that reads the entry and takes the lock, the load, and one script
    that stores the entry and drops the lock; then the entry is a hit and no lock is left."""
    created = await client.post("/api/v1/sessions", json={"title": "miss"}, headers=alice.headers)
    detail = f"/api/v1/sessions/{created.json()['id']}"
    # A first miss connects and loads the scripts; a write then makes the next read miss.
    assert (await client.get(detail, headers=alice.headers)).status_code == 200
    await client.post("/api/v1/sessions", json={"title": "bump"}, headers=alice.headers)
    before = await calls(redis_cache)
    misses, hits = counted("session", "miss"), counted("session", "hit")
    first = await client.get(detail, headers=alice.headers)
    assert first.status_code == 200
    assert counted("session", "miss") - misses == 1
    # The scripts' own commands are counted too: GET and SET NX, then SET and DEL.
    assert delta(before, await calls(redis_cache)) == {
        "cmdstat_evalsha": 2,
        "cmdstat_get": 1,
        "cmdstat_set": 2,
        "cmdstat_del": 1,
    }
    assert [key async for key in redis_cache.scan_iter(f"wingman:cache:e:*{alice.id}*:lock")] == []
    again = await client.get(detail, headers=alice.headers)
    assert again.json() == first.json()
    assert counted("session", "hit") - hits == 1
