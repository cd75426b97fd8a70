"""Feeds for the storage metrics: the database pool's connections and Redis command latency.

Both are hooked once per process where the engine or client is created, and cost a few
microseconds per checkout or command (one memory-mapped write in multiprocess mode).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool

from wingman.server.metrics import DB_POOL_CONNECTIONS, REDIS_COMMAND_DURATION
from wingman.server.redis import RedisClients

# Commands that wait for data by design; their time says nothing about Redis's latency.
_BLOCKING = frozenset({"BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX", "BLMPOP"})


def watch_pool(engine: AsyncEngine) -> None:
    """Keep ``wingman_db_pool_connections{state}`` current on every checkout and checkin.

    ``size`` is what the pool may keep open (``database.pool_size``, see server/database.py),
    ``open`` what it holds now, ``checked_out`` what is in use. SQLAlchemy's queue pool does not
    say how many callers wait for a connection, so ``waiting`` is not reported; ``checked_out``
    at ``size`` is the sign.
    """
    pool: Pool = engine.sync_engine.pool
    size = getattr(pool, "size", None)
    checked_out = getattr(pool, "checkedout", None)
    checked_in = getattr(pool, "checkedin", None)
    if not (callable(size) and callable(checked_out) and callable(checked_in)):
        return  # a pool without counters (NullPool, StaticPool)

    # The series are looked up once, and a value is written only when it changed: a write is a
    # memory-mapped store with a process check, and this runs twice per database use.
    busy, held = DB_POOL_CONNECTIONS.labels("checked_out"), DB_POOL_CONNECTIONS.labels("open")
    DB_POOL_CONNECTIONS.labels("size").set(size())
    last = [-1, -1]

    def update(*_: Any) -> None:
        out = checked_out()
        held_now = checked_in() + out
        if out != last[0]:
            busy.set(out)
            last[0] = out
        if held_now != last[1]:
            held.set(held_now)
            last[1] = held_now

    for name in ("connect", "checkout", "checkin", "close"):
        event.listen(pool, name, update)
    update()


def time_redis(clients: RedisClients) -> None:
    """Time every command of both role clients (one client when both roles share it)."""
    _time_client(clients.queue, "queue")
    clients.queue_mux.observe = REDIS_COMMAND_DURATION.labels("queue").observe
    if clients.cache is not clients.queue:
        _time_client(clients.cache, "cache")
    if clients.cache_mux is not clients.queue_mux:
        clients.cache_mux.observe = REDIS_COMMAND_DURATION.labels("cache").observe


def _time_client(client: Redis, role: str) -> None:
    histogram = REDIS_COMMAND_DURATION.labels(role)
    execute: Callable[..., Awaitable[Any]] = client.execute_command

    async def timed(*args: Any, **options: Any) -> Any:
        name = str(args[0]).upper() if args else ""
        if name in _BLOCKING or (name == "XREAD" and "BLOCK" in (str(a).upper() for a in args)):
            return await execute(*args, **options)
        start = time.perf_counter()
        try:
            return await execute(*args, **options)
        finally:
            histogram.observe(time.perf_counter() - start)

    # An instance attribute shadows the method for this client only.
    client.execute_command = timed  # type: ignore[method-assign]
