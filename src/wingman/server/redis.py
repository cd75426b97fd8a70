"""Redis clients for the two roles: ``queue`` (jobs, limits, realtime) and ``cache``."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis

from wingman.config import RedisSettings


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
    queue: Redis
    cache: Redis

    @classmethod
    def from_settings(cls, settings: RedisSettings, process: str) -> RedisClients:
        queue = connect(settings.queue_url, settings, f"{process}-queue")
        cache = (
            queue
            if settings.effective_cache_url == settings.queue_url
            else connect(settings.effective_cache_url, settings, f"{process}-cache")
        )
        return cls(queue=queue, cache=cache)

    async def close(self) -> None:
        await self.queue.aclose()
        if self.cache is not self.queue:
            await self.cache.aclose()
