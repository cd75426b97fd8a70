"""One structured log line per HTTP request, and the request id that ties its lines together.

The id is the client's ``X-Request-ID`` when it is short and plain (:data:`REQUEST_ID_PATTERN`;
anything else is replaced, so a client cannot inject text into log lines), otherwise a new one.
It is bound into structlog's context for the duration of the request, so every line logged while
serving it (an unexpected error's traceback included) carries ``request_id``, and it is returned
in the ``X-Request-ID`` response header.

The line logs the route template (``/api/v1/sessions/{session_id:uuid}``), never the raw path or
query string, which may hold values a client would not want in a log.

This wraps the whole application (outside routing), so unmatched paths and errors are logged too.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from wingman.server.client_ip import ClientAddresses

log = structlog.get_logger("wingman.request")

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from(value: str | None) -> str:
    """The client's id if it is acceptable, else a new random one."""
    if value is not None and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return os.urandom(16).hex()  # a uuid4's randomness and text, without building the UUID


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _user_id(scope: Scope) -> str | None:
    user: Any = scope.get("user")
    user_id = getattr(user, "id", None)
    return str(user_id) if user_id is not None else None


class RequestLog:
    """ASGI wrapper: request id in, ``X-Request-ID`` out, one ``request`` line per request."""

    def __init__(self, app: ASGIApp, addresses: ClientAddresses) -> None:
        self.app = app
        self.addresses = addresses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(_header(scope, REQUEST_ID_HEADER))
        status = 500
        encoded_id = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != REQUEST_ID_HEADER
                ]
                headers.append((REQUEST_ID_HEADER, encoded_id))
                message["headers"] = headers
            await send(message)

        start = time.perf_counter()
        # bind/reset rather than bound_contextvars(): the same, without a generator per request.
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                route=scope.get("path_template") or None,
                status=status,
                duration_ms=round((time.perf_counter() - start) * 1000, 2),
                user_id=_user_id(scope),
                client_ip=self.addresses.of(scope),
                # Which worker process served it (several share one port).
                pid=os.getpid(),
            )
            structlog.contextvars.reset_contextvars(**bound)
