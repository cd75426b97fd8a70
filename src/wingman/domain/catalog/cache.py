"""A per-process cache of the catalog (tones and config), dropped on every admin change.

Every write publishes on :data:`INVALIDATE_CHANNEL` (queue-role Redis) after its commit; each web
and worker process runs :func:`listen_for_invalidations`, which drops the cache on every message.
Two safety nets cover a missed message: the cache is dropped whenever the subscription is
(re)established, and every entry expires after :data:`DEFAULT_TTL` seconds regardless.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

INVALIDATE_CHANNEL = "wingman:catalog:invalidate"
DEFAULT_TTL = 30.0
RECONNECT_DELAY_MAX = 5.0


class CatalogCache:
    """Named entries, each loaded once per process until dropped or expired.

    Concurrent misses of one entry share one load (a lock per entry). A drop that happens while
    a load is in flight wins: the load's result is returned to its caller but not kept, so a
    value read before a change is never served after the change was announced.
    """

    def __init__(self, ttl: float = DEFAULT_TTL) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def drop(self) -> None:
        """Forget every entry (called on each invalidation message)."""
        self._generation += 1
        self._entries.clear()

    async def get(self, name: str, load: Callable[[], Awaitable[Any]]) -> Any:
        entry = self._entries.get(name)
        if entry is not None and entry[0] > time.monotonic():
            self.hits += 1
            return entry[1]
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            entry = self._entries.get(name)
            if entry is not None and entry[0] > time.monotonic():
                self.hits += 1
                return entry[1]
            self.misses += 1
            generation = self._generation
            value = await load()
            if generation == self._generation:
                self._entries[name] = (time.monotonic() + self.ttl, value)
            return value


async def announce_change(redis: Redis, what: str) -> None:
    """Tell every process to drop its catalog cache; call after the change is committed."""
    await redis.publish(INVALIDATE_CHANNEL, what)


async def listen_for_invalidations(redis: Redis, cache: CatalogCache) -> None:
    """Drop ``cache`` on every invalidation message, until cancelled; reconnects on errors."""
    delay = 0.1
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(INVALIDATE_CHANNEL)
            # Changes made while unsubscribed were not heard: start from an empty cache.
            cache.drop()
            delay = 0.1
            while True:
                # A bounded wait: an idle subscription never trips the client's socket timeout.
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    cache.drop()
        except (RedisError, OSError) as exc:
            log.warning("catalog_subscription_lost", error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_DELAY_MAX)
        finally:
            with suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def start_invalidation_listener(redis: Redis, cache: CatalogCache) -> asyncio.Task[None]:
    """Run :func:`listen_for_invalidations` in the background; stop it with
    :func:`stop_invalidation_listener`."""
    return asyncio.create_task(listen_for_invalidations(redis, cache), name="catalog-invalidation")


async def stop_invalidation_listener(task: asyncio.Task[None]) -> None:
    """Cancel the listener and wait for it to end.

    The cancel is repeated: one that lands just as a bounded read times out can be absorbed by
    the client's timeout handling, and a single lost cancel would hang shutdown.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("catalog_listener_failed", error=type(error).__name__)


@asynccontextmanager
async def invalidation_listener(redis: Redis, cache: CatalogCache) -> AsyncIterator[None]:
    """The listener, running for the duration of the block (the web app's lifespan)."""
    task = start_invalidation_listener(redis, cache)
    try:
        yield
    finally:
        await stop_invalidation_listener(task)
