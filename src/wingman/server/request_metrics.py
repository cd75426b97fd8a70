"""Request count, latency and in-flight figures for every HTTP request.

An ASGI wrapper outside routing, so refusals and unmatched paths are counted too. The route label
is the matched route's template (``/api/v1/sessions/{session_id}``), never the raw path:
ids in labels would make one time series per row. A path that matched no route is ``unmatched``.
"""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from wingman.server.metrics import REQUEST_DURATION, REQUESTS, REQUESTS_IN_FLIGHT

UNMATCHED = "unmatched"
# Any other method a client sends is counted as "other", so it cannot mint new series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """ASGI wrapper: ``wingman_requests_total``, ``..._duration_seconds``, ``..._in_flight``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        REQUESTS_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            REQUESTS_IN_FLIGHT.dec()
            sent = str(scope.get("method", ""))
            method = sent if sent in METHODS else "other"
            route = scope.get("path_template") or UNMATCHED
            REQUESTS.labels(method, route, str(status)).inc()
            REQUEST_DURATION.labels(method, route).observe(time.perf_counter() - start)
