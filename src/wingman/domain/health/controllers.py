"""``GET /health/live`` and ``GET /health/ready``."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from wingman.domain.health.checks import CheckResult, Readiness, readiness
from wingman.server.cluster import Draining


class HealthController(Controller):
    path = "/health"
    # Public: an empty requirement tells clients (and the document) that no token is needed.
    security = ({},)
    tags = ("ops",)

    @get("/live", summary="The process is up", cache=False)
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/ready",
        summary="PostgreSQL, both Redis roles and the schema are ready",
        description="200 when every check passes, 503 naming the checks that failed.",
        cache=False,
    )
    async def ready(
        self,
        db_engine: NamedDependency[AsyncEngine],
        queue_redis: NamedDependency[Redis],
        cache_redis: NamedDependency[Redis],
        migration_head: NamedDependency[str],
        draining: NamedDependency[Draining],
    ) -> Response[Readiness]:
        if draining.active:
            # Stopping: a load balancer takes this node out while it still serves.
            result = Readiness(
                "fail", {"draining": CheckResult("fail", 0.0, "this process is stopping")}
            )
            return Response(result, status_code=HTTP_503_SERVICE_UNAVAILABLE)
        result = await readiness(db_engine, queue_redis, cache_redis, migration_head)
        return Response(
            result, status_code=HTTP_200_OK if result.ok else HTTP_503_SERVICE_UNAVAILABLE
        )
