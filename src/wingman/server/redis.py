"""Redis clients for the two roles: ``queue`` (jobs, limits, realtime) and ``cache``."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis

from wingman.config import RedisSettings
from wingman.server.redis_mux import RedisMux


def connect(url: str, settings: RedisSettings, name: str) -> Redis:
    # A blocking pool: past ``max_connections`` a command waits (up to the socket timeout) for a
    # free connection. redis-py's default pool raises "Too many connections" instead, which
    # under a burst would fail requests that a moment's wait would have served.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.socket_timeout,
        health_check_interval=30,
        retry_on_timeout=True,
        client_name=name,
    )
    return Redis.from_pool(pool)


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
        queue_mux = RedisMux(
            settings.queue_url, timeout=settings.socket_timeout, name=f"{process}-queue-mux"
        )
        if settings.effective_cache_url == settings.queue_url:
            return cls(queue=queue, cache=queue, queue_mux=queue_mux, cache_mux=queue_mux)
        return cls(
            queue=queue,
            cache=connect(settings.effective_cache_url, settings, f"{process}-cache"),
            queue_mux=queue_mux,
            cache_mux=RedisMux(
                settings.effective_cache_url,
                timeout=settings.socket_timeout,
                name=f"{process}-cache-mux",
            ),
        )

    async def close(self) -> None:
        await self.queue.aclose()
        await self.queue_mux.close()
        if self.cache is not self.queue:
            await self.cache.aclose()
        if self.cache_mux is not self.queue_mux:
            await self.cache_mux.close()
