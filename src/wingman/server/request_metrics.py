"""Request count, latency and in-flight figures for every HTTP request.

An ASGI wrapper outside routing, so refusals and unmatched paths are counted too. The route label
is the matched route's template (``/api/v1/sessions/{session_id}``), never the raw path:
ids in labels would make one time series per row. A path that matched no route is ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from wingman.server.metrics import REQUEST_DURATION, REQUESTS, REQUESTS_IN_FLIGHT

UNMATCHED = "unmatched"
# Any other method a client sends is counted as "other", so it cannot mint new series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """ASGI wrapper: ``wingman_requests_total``, ``..._duration_seconds``, ``..._in_flight``.

    The labelled series are looked up once per (method, route, status) and kept: ``labels()``
    checks and locks on every call, a measurable part of a cached read. Labels are bounded
    (methods are folded, routes are templates), so the table stays small.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _series_of(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                REQUESTS.labels(method, route, str(status)),
                REQUEST_DURATION.labels(method, route),
            )
        return series

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
            count, duration = self._series_of(method, route, status)
            count.inc()
            duration.observe(time.perf_counter() - start)
