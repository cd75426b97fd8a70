"""Health probes and problem details, through the HTTP interface against real services."""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.services import PrivateServices
from wingman.app import create_app
from wingman.config import DatabaseSettings, Settings
from wingman.devstack.processes import free_port


async def test_live(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_everything_answers(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "migrations", "redis_queue", "redis_cache"}
    assert all(check["status"] == "ok" for check in body["checks"].values())


async def test_not_ready_without_database_names_it(settings: Settings) -> None:
    dead = msgspec.structs.replace(
        settings.database,
        url=f"postgresql+psycopg://wingman:x@127.0.0.1:{free_port()}/wingman",
        connect_timeout=1,
    )
    app = create_app(msgspec.structs.replace(settings, database=dead))
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "fail"
    assert "connection" in checks["database"]["error"].lower()
    assert checks["redis_queue"]["status"] == "ok"


async def test_not_ready_when_migrations_are_pending(
    services: PrivateServices, settings: Settings, empty_database_url: str
) -> None:
    unmigrated = msgspec.structs.replace(
        settings, database=DatabaseSettings(url=empty_database_url)
    )
    async with AsyncTestClient(app=create_app(unmigrated)) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["migrations"]["status"] == "fail"
    assert "no revision" in checks["migrations"]["error"]


async def test_not_ready_without_cache_redis(settings: Settings) -> None:
    redis = msgspec.structs.replace(
        settings.redis, cache_url=f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1
    )
    async with AsyncTestClient(
        app=create_app(msgspec.structs.replace(settings, redis=redis))
    ) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis_cache"]["status"] == "fail"
    assert checks["redis_queue"]["status"] == "ok"


async def test_unknown_route_is_problem_details(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:wingman:problem:not-found"
    assert body["status"] == 404
    assert body["title"] == "Not Found"


async def test_wrong_method_is_problem_details(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/health/live")
    assert response.status_code == 405
    assert response.json()["type"] == "urn:wingman:problem:method-not-allowed"


async def test_openapi_documents_the_probes(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/docs/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Wingman"
    assert {"/health/live", "/health/ready"} <= set(schema["paths"])
