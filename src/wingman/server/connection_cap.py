"""A cap on what one client IP holds open at once in this process: requests in flight plus open
WebSockets (``server.max_connections_per_ip``; 0 turns it off).

Over the cap a request is answered 429 (``connection-limit``) and a WebSocket is refused before
its handshake completes (the client sees HTTP 403), without reaching the application.

The count is per process, on purpose: the cap exists so that one address cannot take up the
capacity of a process (its event loop, its database pool share, its sockets), and each process
protects its own. A client spread over ``W`` Granian workers holds at most ``W`` times the cap,
a bound the operator sets knowing ``W``; counting in Redis would add a round trip to every
request and a way to leak counts when a process dies. Request rates, which must hold exactly
across processes, are the rate limiter's business (server/ratelimit.py).

Health checks and ``/metrics`` are not counted: monitoring must get through a busy client.
"""

from __future__ import annotations

import msgspec
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from wingman.server.client_ip import ClientAddresses
from wingman.server.errors import PROBLEM_TYPE_PREFIX

EXEMPT_PREFIXES = ("/health", "/metrics")


def _refusal_body(limit: int) -> bytes:
    return msgspec.json.encode(
        {
            "type": PROBLEM_TYPE_PREFIX + "connection-limit",
            "title": "Too Many Requests",
            "status": 429,
            "detail": f"At most {limit} requests and WebSockets may be open at once per address.",
        }
    )


class ConnectionCap:
    """ASGI wrapper counting open requests and WebSockets per client IP in this process."""

    def __init__(self, app: ASGIApp, addresses: ClientAddresses, limit: int) -> None:
        self.app = app
        self.addresses = addresses
        self.limit = limit
        self.open: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.limit <= 0
            or scope["type"] not in (ScopeType.HTTP, ScopeType.WEBSOCKET)
            or scope["path"].startswith(EXEMPT_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        ip = self.addresses.of(scope)
        held = self.open.get(ip, 0)
        if held >= self.limit:
            await self._refuse(scope, receive, send)
            return
        self.open[ip] = held + 1
        try:
            await self.app(scope, receive, send)
        finally:
            remaining = self.open[ip] - 1
            if remaining:
                self.open[ip] = remaining
            else:
                del self.open[ip]

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.WEBSOCKET:
            # A close before accept: the server answers the handshake with 403.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1013, "reason": ""})
            return
        body = _refusal_body(self.limit)
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ],
        }
        await send(start)
        end: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": body,
            "more_body": False,
        }
        await send(end)
