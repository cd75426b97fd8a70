"""``GET /api/v1/ws``: the realtime WebSocket (protocol in ``docs/realtime.md``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, WebSocket, websocket

from wingman.domain.realtime.connection import Connection
from wingman.domain.realtime.dispatcher import Dispatcher
from wingman.domain.realtime.shutdown import close_sockets_before_stop


@websocket("/ws", name="realtime-socket")
async def realtime_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """One client's event stream. It authenticates itself: the JWT middleware skips this path."""
    state = socket.app.state
    await Connection(socket, state.realtime, state.events, state.settings).serve()


@asynccontextmanager
async def realtime_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The process's dispatcher, on the queue-role Redis opened by the Redis lifespan.

    Under Granian the sockets are closed with 1001 when the stop signal arrives, before Granian
    stops serving them (see :mod:`.shutdown`); registered after the Redis lifespan, so that on
    shutdown this one ends first and any socket left is closed before the Redis clients go away.
    """
    dispatcher = Dispatcher(
        app.state.redis.queue,
        app.state.settings.realtime,
        # An account change reaches this process's status cache too: REST follows it at once.
        on_account_change=app.state.user_status.forget,
    )
    app.state.realtime = dispatcher
    await dispatcher.start()
    node = app.state.settings.node
    # Only an app node has a load balancer to wait for.
    drain_seconds = node.drain_seconds if node.role == "app" else 0.0
    close_sockets_before_stop(dispatcher, app.state.draining, drain_seconds)
    try:
        yield
    finally:
        await dispatcher.stop()
