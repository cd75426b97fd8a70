"""Tiered request limits in one process on real Redis: headers, live config, tier changes, and what
happens when the limiter's Redis goes away."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.support.accounts import Caller, create_caller
from tests.support.ratelimits import set_rate_limits
from tests.support.services import PrivateServices
from wingman.app import create_app
from wingman.config import RedisSettings, Settings
from wingman.db.models import UserRole, UserTier
from wingman.devstack.processes import free_port
from wingman.devstack.redis import RedisServer
from wingman.server.database import create_engine


async def make_caller(settings: Settings, **kwargs: Any) -> Caller:
    engine = create_engine(settings.database, "wingman-tests")
    try:
        return await create_caller(engine, settings, **kwargs)
    finally:
        await engine.dispose()


async def limit_seen(client: AsyncTestClient[Litestar], headers: dict[str, str]) -> int:
    response = await client.get("/api/v1/me", headers=headers)
    assert response.status_code == 200, response.text
    return int(response.headers["RateLimit-Limit"])


async def wait_for_limit(
    client: AsyncTestClient[Litestar], headers: dict[str, str], wanted: int
) -> None:
    """The process drops its config cache when the change is announced: wait for that."""
    for _ in range(100):
        if await limit_seen(client, headers) == wanted:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"RateLimit-Limit never became {wanted}")


async def test_every_answer_carries_the_remaining_budget(
    client: AsyncTestClient[Litestar], settings: Settings, fresh_limits: None
) -> None:
    caller = await make_caller(settings)
    first = await client.get("/api/v1/me", headers=caller.headers)
    second = await client.get("/api/v1/me", headers=caller.headers)
    assert first.headers["RateLimit-Limit"] == "10000"
    assert int(first.headers["RateLimit-Remaining"]) == 9999
    assert int(second.headers["RateLimit-Remaining"]) == 9998
    assert "Retry-After" not in second.headers
    anonymous = await client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 40})
    assert anonymous.status_code == 401
    assert anonymous.headers["RateLimit-Limit"] == "100"
    # Outside the API: no allowance is spent.
    health = await client.get("/health/live")
    assert "RateLimit-Limit" not in health.headers


async def test_a_config_change_applies_without_a_restart(
    client: AsyncTestClient[Litestar], settings: Settings, fresh_limits: None
) -> None:
    caller = await make_caller(settings)
    assert await limit_seen(client, caller.headers) == 10000
    await set_rate_limits(settings, {"user": {"limit": 4, "period": "minute"}})
    await wait_for_limit(client, caller.headers, 4)  # spends one hit of the new window
    statuses = [(await client.get("/api/v1/me", headers=caller.headers)) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    refused = statuses[-1]
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    body = refused.json()
    assert (body["type"], body["scope"]) == ("urn:wingman:problem:rate-limited", "api:user")


async def test_a_tier_change_applies_to_a_live_token(
    client: AsyncTestClient[Litestar], settings: Settings, fresh_limits: None
) -> None:
    await set_rate_limits(
        settings,
        {"user": {"limit": 50, "period": "minute"}, "premium": {"limit": 500, "period": "minute"}},
    )
    admin = await make_caller(settings, tier=UserTier.PREMIUM, role=UserRole.ADMIN)
    user = await make_caller(settings)
    await wait_for_limit(client, user.headers, 50)
    patched = await client.patch(
        f"/api/v1/admin/users/{user.id}", json={"tier": "premium"}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    # Same token (its claim still says "free"): the premium allowance applies at once here, and
    # within auth.status_cache_seconds in other processes.
    assert await limit_seen(client, user.headers) == 500


@pytest.fixture
def private_redis(services: PrivateServices) -> Iterator[RedisServer]:
    """A queue-role Redis of this test's own, so it can be stopped."""
    server = RedisServer(
        services.root / f"redis-{secrets.token_hex(4)}", "queue", free_port(), "pw-" + "x" * 16
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_redis_down_fails_open_for_requests_and_closed_for_codes(
    settings: Settings, private_redis: RedisServer, fresh_limits: None
) -> None:
    local = msgspec.structs.replace(
        settings,
        redis=RedisSettings(
            queue_url=private_redis.url(), cache_url=settings.redis.cache_url, socket_timeout=1.0
        ),
    )
    caller = await make_caller(settings)

    def errors(scope: str) -> float:
        return REGISTRY.get_sample_value("wingman_rate_limiter_errors_total", {"scope": scope}) or 0

    async with AsyncTestClient(app=create_app(local)) as client:
        assert (await client.get("/api/v1/me", headers=caller.headers)).headers[
            "RateLimit-Limit"
        ] == "10000"
        private_redis.stop()
        before = errors("api:user")
        with capture_logs() as logs:
            answers = [await client.get("/api/v1/me", headers=caller.headers) for _ in range(5)]
        assert [r.status_code for r in answers] == [200] * 5
        assert all("RateLimit-Limit" not in r.headers for r in answers)
        assert errors("api:user") == before + 5
        # One warning for the outage, not one per request.
        warnings = [e for e in logs if e["event"] == "rate_limiter_unavailable"]
        assert len(warnings) == 1
        assert warnings[0]["scope"] == "api:user"

        # Sign-in codes: refused while they cannot be counted (the anon check failed open).
        code = await client.post(
            "/api/v1/auth/otp/request", json={"channel": "email", "destination": "a@example.org"}
        )
        assert code.status_code == 503, code.text
        assert code.json()["type"] == "urn:wingman:problem:rate-limiter-unavailable"
        assert code.headers["Retry-After"] == "5"
        assert errors("otp:ip") >= 1

        # Back again: counting resumes on the same pool.
        private_redis.start()
        again = await client.get("/api/v1/me", headers=caller.headers)
        assert again.headers["RateLimit-Limit"] == "10000"


async def test_request_ids_are_honoured_or_made(client: AsyncTestClient[Litestar]) -> None:
    given = await client.get("/health/live", headers={"X-Request-ID": "abc-123.x:y_z"})
    assert given.headers["X-Request-ID"] == "abc-123.x:y_z"
    for bad in ("has space", "x" * 129, "new\\nline", ""):
        replaced = await client.get("/health/live", headers={"X-Request-ID": bad})
        assert replaced.headers["X-Request-ID"] != bad
        assert len(replaced.headers["X-Request-ID"]) == 32
    made = await client.get("/api/v1/nowhere")
    assert made.status_code == 404
    assert len(made.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    ("accept", "encoding"), [("br, gzip", "br"), ("gzip", "gzip"), ("identity", None)]
)
async def test_compression_is_negotiated(
    client: AsyncTestClient[Litestar], accept: str, encoding: str | None
) -> None:
    large = await client.get("/api/docs/openapi.json", headers={"Accept-Encoding": accept})
    assert large.status_code == 200
    assert len(large.content) > 1024
    assert large.headers.get("Content-Encoding") == encoding
    assert large.json()["openapi"].startswith("3.")
    small = await client.get("/health/live", headers={"Accept-Encoding": accept})
    assert "Content-Encoding" not in small.headers
