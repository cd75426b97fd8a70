"""``GET /api/v1/ws``: the realtime WebSocket (protocol in ``docs/realtime.md``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from redis.asyncio import Redis

from wingman.config import Settings
from wingman.domain.realtime.connection import Connection
from wingman.domain.realtime.dispatcher import Dispatcher
from wingman.domain.realtime.events import EventBus
from wingman.domain.realtime.shutdown import close_sockets_before_stop
from wingman.server.cluster import Draining


@websocket("/ws", name="realtime-socket")
async def realtime_socket(
    socket: WebSocket[Any, Any, Any],
    realtime: NamedDependency[Dispatcher],
    events: NamedDependency[EventBus],
    settings: NamedDependency[Settings],
) -> None:
    """One client's event stream. It authenticates itself: the JWT middleware skips this path."""
    await Connection(socket, realtime, events, settings).serve()


@asynccontextmanager
async def running_dispatcher(
    redis: Redis,
    settings: Settings,
    draining: Draining,
    on_account_change: Callable[[UUID], None],
    on_hearing: Callable[[bool], None] | None = None,
) -> AsyncIterator[Dispatcher]:
    """The process's dispatcher, on the queue-role Redis, for the duration of the block.

    Under Granian the sockets are closed with 1001 when the stop signal arrives, before Granian
    stops serving them (see :mod:`.shutdown`); entered after the Redis clients open, so that on
    shutdown it ends first and any socket left is closed before the Redis clients go away.
    ``on_account_change`` is called with the user id of every account change (the process's
    status cache: REST follows it at once), ``on_hearing`` with whether such changes are heard
    (see :class:`Dispatcher`).
    """
    dispatcher = Dispatcher(
        redis, settings.realtime, on_account_change=on_account_change, on_hearing=on_hearing
    )
    await dispatcher.start()
    node = settings.node
    # Only an app node has a load balancer to wait for.
    drain_seconds = node.drain_seconds if node.role == "app" else 0.0
    close_sockets_before_stop(dispatcher, draining, drain_seconds)
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()
