"""A bare Litestar app: the ceiling the micro benchmarks compare Wingman's routes with.

Served by ``wingman serve --app wingman.loadtest.bare:create_app``, so Granian runs it with the
very settings (interface, loop, backlog, workers) that serve Wingman. One JSON route, no
middleware, no database, no Redis: what a request costs before Wingman does anything.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, get


@get("/bare", sync_to_thread=False)
def bare() -> dict[str, Any]:
    return {"status": "ok", "items": [{"id": n, "title": f"Chat {n}"} for n in range(3)]}


@get("/health/ready", sync_to_thread=False)
def ready() -> dict[str, str]:
    return {"status": "ready"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[bare, ready], openapi_config=None, logging_config=None)
