"""The per-process catalog cache and its Redis subscription (real Redis)."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from wingman.config import Settings
from wingman.domain.catalog.cache import (
    INVALIDATE_CHANNEL,
    CatalogCache,
    announce_change,
    invalidation_listener,
)


class Loads:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> int:
        self.count += 1
        await asyncio.sleep(0.01)
        return self.count


async def wait_dropped(cache: CatalogCache, load: Loads, budget: float = 1.0) -> float:
    start = time.monotonic()
    before = load.count
    while time.monotonic() - start < budget:
        await cache.get("tones", load)
        if load.count > before:
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise AssertionError(f"cache not dropped within {budget} s")


async def test_concurrent_misses_share_one_load() -> None:
    cache, load = CatalogCache(), Loads()
    values = await asyncio.gather(*(cache.get("tones", load) for _ in range(20)))
    assert values == [1] * 20
    assert load.count == 1
    assert await cache.get("tones", load) == 1


async def test_a_drop_during_a_load_is_not_undone_by_it() -> None:
    cache = CatalogCache()
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(0.05)
        return "stale"

    pending = asyncio.create_task(cache.get("tones", slow))
    await started.wait()
    cache.drop()
    assert await pending == "stale"

    async def fresh() -> str:
        return "fresh"

    assert await cache.get("tones", fresh) == "fresh"


async def test_entries_expire_after_the_ttl() -> None:
    cache, load = CatalogCache(ttl=0.05), Loads()
    await cache.get("tones", load)
    await asyncio.sleep(0.08)  # the expiry is what is tested: let the 50 ms TTL pass
    await cache.get("tones", load)
    assert load.count == 2


async def test_an_announcement_drops_the_cache(redis_queue: Redis) -> None:
    cache, load = CatalogCache(), Loads()
    await cache.get("tones", load)
    async with invalidation_listener(redis_queue, cache):
        # The listener drops the cache once subscribed: from that drop on it hears announcements.
        await wait_dropped(cache, load, budget=5.0)
        await cache.get("tones", load)
        assert load.count == 2
        await announce_change(redis_queue, "tones")
        assert await wait_dropped(cache, load) < 1.0


async def test_the_listener_comes_back_after_its_connection_is_killed(
    redis_queue: Redis, settings: Settings
) -> None:
    cache, load = CatalogCache(), Loads()
    listener_redis = Redis.from_url(settings.redis.queue_url, client_name="catalog-listener-test")
    try:
        await cache.get("tones", load)
        async with invalidation_listener(listener_redis, cache):
            await wait_dropped(cache, load, budget=5.0)  # subscribed (see above)
            killed = await redis_queue.client_kill_filter(_type="pubsub", skipme=True)
            assert killed >= 1
            # Whatever was announced while it was away is unknown: it drops the cache again once
            # subscribed anew, so after this drop it hears announcements.
            await wait_dropped(cache, load, budget=2.0)
            await announce_change(redis_queue, "tones")
            assert await wait_dropped(cache, load) < 1.0
    finally:
        await listener_redis.aclose()


async def test_announcements_go_to_the_catalog_channel(redis_queue: Redis) -> None:
    pubsub = redis_queue.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(INVALIDATE_CHANNEL)
    try:
        await announce_change(redis_queue, "config:features")
        message = None
        deadline = time.monotonic() + 2
        while message is None and time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=0.5)
        assert message is not None
        assert message["data"] == b"config:features"
    finally:
        await pubsub.aclose()
