"""The read cache: hot per-user reads kept in the cache-role Redis, invalidated by a version bump.

Keys:

- ``wingman:cache:v:<user>`` in the **queue-role** Redis: the user's version, an integer;
- ``wingman:cache:e:<name>:<user>:<version>:<key>`` in the cache-role Redis: one msgspec
  (MessagePack) encoded value, with a TTL.

Any write of a user's data bumps that user's version with one ``INCR``, so every cached read of
theirs misses from then on and the old entries simply expire. The bump must come *after* the
write commits: a bump before it would let a concurrent read load the old rows and store them
under the new version. :class:`WriteBarrier` does that for every HTTP write; the AI worker,
which changes messages outside any request, calls :func:`invalidate_user` after its own commits.

The version is read *before* the loader runs, so a value loaded while a write commits is stored
under the old version, which nobody reads any more: a stale value is never stored under a
current version.

**Versions never vanish early.** The cache Redis evicts keys under memory pressure
(``allkeys-lru``); a version evicted there while an entry stored under an older one survived
would start again from an old number and serve that stale entry until its TTL. So versions live
in the queue Redis (``noeviction``), and they do not start from 0: a missing version is created
from the server clock in microseconds (:data:`_VERSION`), so a version created after the last one
expired (:data:`VERSION_SECONDS` after it was created) is larger than any the user had before.
A bump of a missing version does nothing (:data:`_BUMP`): nobody holds a current version then.

**No extra round trip.** Every signed-in API request already runs the request limiter's script
on the queue Redis; that same script returns the caller's version (domain/catalog/request_limits.py
asks for it, :func:`remember_version` keeps it in the ASGI scope), and a cached read passes its
request's scope, so a hit is one call on the cache Redis after the limiter's: the first step of
a read (below), or a ``GET`` for :meth:`ReadCache.peek`.
Only without the limiter (``server.rate_limits`` off, or its store unreachable) or for a version
not yet created does a read fetch the version itself, with one more call to the queue Redis.

**Stampede protection.** When a hot key is cold (expired, or just invalidated) and many requests
ask at once, one of them loads it: the first takes a short Redis lock (``SET NX PX``), the others
poll the entry every :data:`POLL_SECONDS` until it appears, and load it themselves only if the
lock holder has not stored it within ``lock_seconds`` (a crashed or slow loader costs latency,
never an error). N concurrent cold reads, in one process or across processes, make one loader
call (tests/integration/server/test_read_cache.py); the waiters pay at most one poll interval
over the loader's time.

**A miss is two calls.** Reads follow writes (a user lists and opens sessions after posting, and
every post and reply bumps the version), so under the load profile nearly every list and detail
read misses. The entry's ``GET`` and the lock's ``SET NX`` are one script (:data:`_GET_OR_LOCK`),
the store and the unlock another (:data:`_STORE`), both on the cache Redis's pipelined
connection: a miss waits twice on Redis around its loader, where a ``GET``, a ``SET NX``, a
``SET`` and a ``DEL`` waited four times, each through redis-py (docs/performance.md, eighth
round). Only the waiters' polls stay on redis-py.

If either Redis is unreachable, reads go straight to the loader and writes log the failed bump:
a stale entry can then live until its TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wingman.config import CacheSettings
from wingman.server.app_resources import scope_resources
from wingman.server.metrics import CACHE_REQUESTS
from wingman.server.redis_mux import RedisMux

log = structlog.get_logger(__name__)

T = TypeVar("T")

PREFIX = "wingman:cache"
POLL_SECONDS = 0.01
# How long a version lives after it was created (bumps keep its expiry): one day of an idle
# user's key in the queue Redis, then their next read creates a new, larger one.
VERSION_SECONDS = 86_400

# KEYS[1]: the version key. ARGV[1]: VERSION_SECONDS. The version, created from the server clock
# (seconds and microseconds as digits: no Lua number, which would round) when missing.
_VERSION = """
local version = redis.call('GET', KEYS[1])
if version then
    return version
end
local now = redis.call('TIME')
version = now[1] .. string.format('%06d', tonumber(now[2]))
redis.call('SET', KEYS[1], version, 'EX', ARGV[1])
return version
"""

# KEYS[1]: the version key. The new version, or 0 when there was none to bump.
_BUMP = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCR', KEYS[1])
end
return 0
"""

# KEYS[1]: the entry, KEYS[2]: its lock. ARGV[1]: the lock's lifetime in milliseconds. The
# entry, or nil and whether this caller took the lock (nil: Lua's false in a reply).
_GET_OR_LOCK = """
local value = redis.call('GET', KEYS[1])
if value then
    return {value, 0}
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
    return {false, 1}
end
return {false, 0}
"""

# KEYS[1]: the entry, KEYS[2]: its lock. ARGV[1]: the value, ARGV[2]: its TTL in seconds, ARGV[3]:
# 1 when the caller holds the lock, which goes with the store.
_STORE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if ARGV[3] == '1' then
    redis.call('DEL', KEYS[2])
end
return 1
"""

# Where a request keeps the version its limiter call brought: (user id, version).
_SCOPE_VERSION = "wingman.cache_version"


@lru_cache(maxsize=64)
def _counted(name: str, result: str) -> Any:
    """The labelled lookup counter (``labels()`` checks and locks on every call)."""
    return CACHE_REQUESTS.labels(name, result)


def version_key(user_id: UUID) -> str:
    """The key of the user's version, in the queue-role Redis."""
    return f"{PREFIX}:v:{user_id}"


async def invalidate_user(redis_queue: Redis | RedisMux, user_id: UUID) -> None:
    """Make every cached read of ``user_id`` miss. Call it after the change has committed.

    Every write request and every finished AI reply makes this call: the web and the workers
    pass their pipelined connection to the **queue** Redis (server/redis_mux.py)."""
    keys = [version_key(user_id)]
    if isinstance(redis_queue, RedisMux):
        await redis_queue.evalsha(_BUMP, keys, [])
    else:
        await redis_queue.eval(_BUMP, len(keys), *keys)


def remember_version(scope: Scope, user_id: UUID, version: bytes) -> None:
    """Keep ``version``, read for ``user_id`` during this request, for its cached reads."""
    scope[_SCOPE_VERSION] = (user_id, version)  # type: ignore[literal-required]


class ReadCache:
    """Per-user cached reads: entries in the cache-role Redis, versions in the queue-role one."""

    def __init__(
        self,
        redis: Redis,
        versions: RedisMux,
        settings: CacheSettings,
        mux: RedisMux | None = None,
    ) -> None:
        self.redis = redis
        self.enabled = settings.enabled
        self.ttl = settings.ttl_seconds
        self.lock_seconds = settings.lock_seconds
        # The versions' pipelined connection to the queue Redis.
        self._versions = versions
        # The entry read every request makes goes through the pipelined connection to the cache
        # Redis when there is one (server/redis_mux.py); misses, locks and stores through redis-py.
        self._mux = mux

    async def version(self, user_id: UUID, scope: Scope | None = None) -> bytes:
        """The user's current version: the one this request's limiter call brought (see the
        module docstring), else read (or created) in the queue Redis."""
        known: Any = scope.get(_SCOPE_VERSION) if scope is not None else None
        if known is not None and known[0] == user_id:
            version: bytes = known[1]
            return version
        version = await self._versions.evalsha(_VERSION, [version_key(user_id)], [VERSION_SECONDS])
        return version

    async def _entry(self, entry: str) -> bytes | None:
        if self._mux is not None:
            raw: bytes | None = await self._mux.execute("GET", entry)
            return raw
        value = await self.redis.get(entry)
        return value if isinstance(value, bytes) else None

    async def peek(
        self, name: str, user_id: UUID, key: str, scope: Scope | None = None
    ) -> bytes | None:
        """The stored value of ``name``/``key`` for this user (msgpack), or None: a miss, the
        cache off or unreachable. Only a hit is counted: whoever loads on a miss counts that.
        ``scope``: the request's, to use the version its limiter call brought."""
        if not self.enabled:
            return None
        try:
            version = await self.version(user_id, scope)
            raw = await self._entry(f"{PREFIX}:e:{name}:{user_id}:{version.decode()}:{key}")
        except RedisError:
            return None
        if raw is not None:
            _counted(name, "hit").inc()
        return raw

    async def get_or_load(
        self,
        name: str,
        user_id: UUID,
        key: str,
        load: Callable[[], Awaitable[T]],
        type_: type[T],
        *,
        scope: Scope | None = None,
    ) -> T:
        """The cached value of ``name``/``key`` for this user, or ``load()``'s (then stored).
        ``scope``: the request's, to use the version its limiter call brought."""
        if not self.enabled:
            return await load()
        try:
            version = await self.version(user_id, scope)
            entry = f"{PREFIX}:e:{name}:{user_id}:{version.decode()}:{key}"
            lock = f"{entry}:lock"
            raw, owner = await self._script(
                _GET_OR_LOCK, [entry, lock], [int(self.lock_seconds * 1000)]
            )
        except RedisError as exc:
            log.warning("cache_unavailable", cache=name, error=type(exc).__name__)
            return await load()
        if raw is not None:
            _counted(name, "hit").inc()
            return msgspec.msgpack.decode(raw, type=type_)
        _counted(name, "miss").inc()
        if not owner:
            try:
                waited = await self._wait_for(entry, lock)
            except RedisError as exc:
                log.warning("cache_unavailable", error=type(exc).__name__)
                return await load()
            if waited is not None:
                return msgspec.msgpack.decode(waited, type=type_)
        return await self._load_and_store(entry, lock, bool(owner), load)

    async def _load_and_store(
        self, entry: str, lock: str, owner: bool, load: Callable[[], Awaitable[T]]
    ) -> T:
        try:
            value = await load()
        except BaseException:
            # A loader that fails (a 404, say) frees the waiters at once; they load themselves.
            if owner:
                await self._forget(lock)
            raise
        try:
            await self._script(
                _STORE, [entry, lock], [msgspec.msgpack.encode(value), self.ttl, int(owner)]
            )
        except RedisError as exc:
            # The lock, if it stayed, runs out within ``lock_seconds``.
            log.warning("cache_store_failed", error=type(exc).__name__)
        return value

    async def _script(self, script: str, keys: list[str], args: list[bytes | int]) -> Any:
        """Run one of this module's scripts on the cache Redis: through the pipelined
        connection when there is one, else through redis-py."""
        if self._mux is not None:
            return await self._mux.evalsha(script, keys, args)
        return await self.redis.eval(script, len(keys), *keys, *args)

    async def _wait_for(self, entry: str, lock: str) -> bytes | None:
        """The entry once the lock holder stored it; None when the lock went or timed out."""
        deadline = time.monotonic() + self.lock_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            raw, locked = await self.redis.mget(entry, lock)
            if isinstance(raw, bytes):
                return raw
            if locked is None:
                return None
        return None

    async def _forget(self, lock: str) -> None:
        try:
            await self.redis.delete(lock)
        except RedisError as exc:
            log.warning("cache_unlock_failed", error=type(exc).__name__)


# Methods that may write; a response to one of these bumps the caller's version.
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class WriteBarrier:
    """ASGI wrapper: after an authenticated write commits, bump the writer's cache version.

    It acts on ``http.response.start``, which reaches it only after the database plugin's
    before-send hook has committed (or rolled back) the request's transaction, and before the
    client can see the response, so the client's very next read misses. 2xx answers bump (the
    write committed), and so do 5xx ones (a handler that commits early may fail after its
    commit); other 4xx answers wrote nothing. One bump per write request, whatever it touched
    (sessions, messages, profiles, feedback): no write path can forget to invalidate.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope.get("method") not in _WRITES:
            await self.app(scope, receive, send)
            return

        async def send_after_bump(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                user_id = getattr(scope.get("user"), "id", None)
                if isinstance(user_id, UUID) and (200 <= status < 300 or status >= 500):
                    await _bump(scope, user_id)
            await send(message)

        await self.app(scope, receive, send_after_bump)


async def _bump(scope: Scope, user_id: UUID) -> None:
    redis: RedisMux = scope_resources(scope).redis.queue_mux
    try:
        await invalidate_user(redis, user_id)
    except RedisError as exc:
        # The write itself succeeded; its cached reads now live until their TTL.
        log.warning("cache_invalidation_failed", user_id=str(user_id), error=type(exc).__name__)
