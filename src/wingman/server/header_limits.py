"""Caps on the size of request headers, answered ``431`` problem+json.

Two layers hold the cap, because the first one cannot answer in the API's format:

- Granian refuses a request head larger than its HTTP/1 read buffer
  (:func:`server_buffer_bytes`) with a bare ``431`` before any Python code runs; that bounds the
  memory one connection can make a worker hold. HTTP/2 header lists are capped at the same size.
- This layer, inside that bound, refuses a request whose headers total more than
  ``server.max_header_bytes`` or hold one line (name and value) longer than
  ``server.max_header_line_bytes`` with a ``431`` problem of type
  ``request-header-fields-too-large``, logged as one request line like any other.

Only HTTP requests are checked here; a WebSocket handshake is held by Granian's bound alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.enums import ScopeType
from litestar.serialization import encode_json
from litestar.types import ASGIApp, Receive, Scope, Send

from wingman.server.errors import problem_type

# Granian's buffer holds the whole head (request line and headers): this many times the app's
# own cap, so anything the app refuses reaches the app and is answered in the API's format.
SERVER_BUFFER_FACTOR = 4


def server_buffer_bytes(max_header_bytes: int) -> int:
    """Granian's HTTP/1 read buffer (its hard cap on a request head) for the app's header cap;
    never below hyper's floor of 8 KiB."""
    return max(8192, SERVER_BUFFER_FACTOR * max_header_bytes)


def oversized(headers: Iterable[tuple[bytes, bytes]], total_cap: int, line_cap: int) -> str | None:
    """Why these headers are too large (None: they are not). A line counts as ``name: value``
    plus its line end, as it was sent."""
    total = 0
    for name, value in headers:
        size = len(name) + len(value) + 4
        if size > line_cap:
            return f"A request header line is longer than {line_cap} bytes."
        total += size
    if total > total_cap:
        return f"The request headers total more than {total_cap} bytes."
    return None


class HeaderLimits:
    """ASGI layer: see the module docstring."""

    def __init__(self, app: ASGIApp, total_cap: int, line_cap: int) -> None:
        self.app = app
        self.total_cap = total_cap
        self.line_cap = line_cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            reason = oversized(scope["headers"], self.total_cap, self.line_cap)
            if reason is not None:
                await _refuse(send, reason)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, detail: str) -> None:
    body = encode_json(
        {
            "status": 431,
            "type": problem_type("request-header-fields-too-large"),
            "title": "Request Header Fields Too Large",
            "detail": detail,
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
