"""A Redis connection whose transport closed under it, on uvloop (the web server's loop).

uvloop raises ``RuntimeError`` for a write on a closed transport; the clients built by
``server/redis.py`` must raise a Redis connection error instead, which every caller handles
(during a Sentinel failover this was a 500 on a cached read), and the next call gets a new
connection.
"""

from __future__ import annotations

import contextlib

import uvloop
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from wingman.config import Settings
from wingman.server.redis import client, connect


async def _close_a_pooled_transport(redis: Redis) -> None:
    """Abort the socket of the pool's idle connection, as a dying server's close does."""
    assert await redis.ping()
    connection = await redis.connection_pool.get_connection()
    connection._writer.transport.abort()  # type: ignore[union-attr]
    await redis.connection_pool.release(connection)


def test_a_write_on_a_closed_transport_is_a_lost_connection(settings: Settings) -> None:
    async def main() -> None:
        for redis in (
            client(settings.redis.queue_url, timeout=2),
            connect(settings.redis.queue_url, settings.redis, "closed-transport"),
        ):
            try:
                await _close_a_pooled_transport(redis)
                # A connection error (or, for the pooled client that retries, an answer from a
                # new connection); never a RuntimeError.
                with contextlib.suppress(RedisConnectionError):
                    await redis.set("closed-transport", "1")
                assert await redis.set("closed-transport", "1")
                assert await redis.get("closed-transport") == b"1"
            finally:
                await redis.aclose()

    uvloop.run(main())
