"""Redis clients for the two roles: ``queue`` (jobs, limits, realtime) and ``cache``.

Every Redis client of every process (web, workers, ``wingmanctl``, health and doctor checks,
load tests) is built here, from a role's URL (wingman/redis_address.py). A ``redis+sentinel://``
URL gives clients that follow the master: redis-py's Sentinel pool asks the Sentinels for the
master's address whenever it opens a connection, and a connection that gets ``READONLY`` (its
server was demoted to a replica) is dropped and raises :class:`redis.exceptions.ConnectionError`,
so the next command re-discovers. Idle connections to a former master are closed as soon as a
new connection learns the new address.

Under uvloop (the web server's loop), writing to a connection whose transport the server has
just closed raises ``RuntimeError`` ("the handler is closed"), which redis-py does not take for
a lost connection: a request then failed with a 500 during a failover. The connections built
here turn it into :class:`redis.exceptions.ConnectionError`, which the callers already handle
(a cache miss, a 503, a retried job write); the next call opens a new connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.sentinel
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from wingman.config import RedisSettings
from wingman.redis_address import SentinelAddress, is_sentinel_url, parse_sentinel_url
from wingman.server.redis_mux import RedisMux


class _ClosedTransportIsLost:
    """Mixed into a redis-py connection: a write on a closed transport is a lost connection."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        try:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except RuntimeError as exc:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise RedisConnectionError(f"Connection to Redis lost: {exc}") from exc


class _Connection(_ClosedTransportIsLost, Connection):
    pass


class _SentinelConnection(_ClosedTransportIsLost, SentinelManagedConnection):
    pass


class _SentinelPool(SentinelConnectionPool):
    """The master's pool; closing it closes the connections to the Sentinels too."""

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


class _BlockingSentinelPool(_SentinelPool, BlockingConnectionPool):
    """Past ``max_connections`` a command waits for a free connection (as in :func:`connect`)."""


class _SyncSentinelPool(redis.sentinel.SentinelConnectionPool):
    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        if inuse_connections:  # closing the client, not re-pointing at a new master
            for sentinel in self.sentinel_manager.sentinels:
                sentinel.close()


def _sentinel_kwargs(address: SentinelAddress, timeout: float | None) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "username": address.sentinel_username,
        "password": address.sentinel_password,
        "ssl": address.tls,
    }


def _master_kwargs(address: SentinelAddress, timeout: float | None) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "username": address.username,
        "password": address.password,
        "db": address.db,
        "ssl": address.tls,
    }


def _sentinel_master(url: str, timeout: float | None, pool: type, /, **kwargs: Any) -> Redis:
    address = parse_sentinel_url(url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        address.sentinels, sentinel_kwargs=_sentinel_kwargs(address, timeout)
    )
    return sentinel.master_for(  # type: ignore[no-any-return]
        address.master_name,
        connection_pool_class=pool,
        connection_class=_SentinelConnection,
        **_master_kwargs(address, timeout),
        **kwargs,
    )


def connect(url: str, settings: RedisSettings, name: str) -> Redis:
    """The pooled client of a long-running process for the role at ``url``."""
    # A blocking pool: past ``max_connections`` a command waits (up to the socket timeout) for a
    # free connection. redis-py's default pool raises "Too many connections" instead, which
    # under a burst would fail requests that a moment's wait would have served.
    options: dict[str, Any] = {
        "max_connections": settings.max_connections,
        "timeout": settings.socket_timeout,
        "health_check_interval": 30,
        "retry_on_timeout": True,
        "client_name": name,
    }
    if is_sentinel_url(url):
        return _sentinel_master(url, settings.socket_timeout, _BlockingSentinelPool, **options)
    # ``rediss://`` and ``unix://`` URLs bring their own connection class, which wins.
    pool = BlockingConnectionPool.from_url(
        url,
        connection_class=_Connection,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.socket_timeout,
        **options,
    )
    return Redis.from_pool(pool)


def client(url: str, *, timeout: float | None, name: str | None = None) -> Redis:
    """A plain client for the role at ``url``: a command or check, the job queues (whose
    blocking dequeue needs ``timeout=None``: it waits longer than any socket timeout)."""
    options: dict[str, Any] = {"client_name": name}
    if is_sentinel_url(url):
        return _sentinel_master(url, timeout, _SentinelPool, **options)
    return Redis.from_url(
        url,
        connection_class=_Connection,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        **options,
    )


def sync_client(url: str, *, timeout: float, decode_responses: bool = False) -> redis.Redis:
    """A blocking client for the command line's checks (doctor, tune)."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=decode_responses,
        )
    address = parse_sentinel_url(url)
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        address.sentinels, sentinel_kwargs=_sentinel_kwargs(address, timeout)
    )
    return sentinel.master_for(  # type: ignore[no-any-return,no-untyped-call]
        address.master_name,
        connection_pool_class=_SyncSentinelPool,
        decode_responses=decode_responses,
        **_master_kwargs(address, timeout),
    )


def mux(url: str, settings: RedisSettings, name: str) -> RedisMux:
    """The pipelined connection for the role at ``url`` (it follows a Sentinel master too)."""
    return RedisMux(url, timeout=settings.socket_timeout, name=name)


@dataclass(slots=True)
class RedisClients:
    """redis-py clients per role, and a pipelined connection per role (server/redis_mux.py) for
    the calls every request makes (request limiter, read cache)."""

    queue: Redis
    cache: Redis
    queue_mux: RedisMux
    cache_mux: RedisMux

    @classmethod
    def from_settings(cls, settings: RedisSettings, process: str) -> RedisClients:
        queue = connect(settings.queue_url, settings, f"{process}-queue")
        queue_mux = mux(settings.queue_url, settings, f"{process}-queue-mux")
        if settings.effective_cache_url == settings.queue_url:
            return cls(queue=queue, cache=queue, queue_mux=queue_mux, cache_mux=queue_mux)
        return cls(
            queue=queue,
            cache=connect(settings.effective_cache_url, settings, f"{process}-cache"),
            queue_mux=queue_mux,
            cache_mux=mux(settings.effective_cache_url, settings, f"{process}-cache-mux"),
        )

    async def close(self) -> None:
        await self.queue.aclose()
        await self.queue_mux.close()
        if self.cache is not self.queue:
            await self.cache.aclose()
        if self.cache_mux is not self.queue_mux:
            await self.cache_mux.close()
