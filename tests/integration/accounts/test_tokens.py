"""Access and refresh tokens: rotation, reuse detection, logout, bad JWTs, disabled accounts."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.accounts.conftest import WorkerLog, bearer, request_code, sign_in
from tests.support.polling import until
from tests.support.services import child_env
from wingman.app import create_app
from wingman.config import AuthSettings, Settings
from wingman.server.app_resources import app_resources


async def refresh(client: AsyncTestClient[Litestar], token: str) -> Any:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: AsyncTestClient[Litestar], signed_in: dict[str, Any]
) -> None:
    first = signed_in["refresh_token"]
    rotated = await refresh(client, first)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["refresh_token"]
    assert second != first
    assert (await client.get("/api/v1/me", headers=bearer(rotated.json()))).status_code == 200

    # The spent token comes back (a thief's copy, say): refused, and the family is revoked.
    reused = await refresh(client, first)
    assert reused.status_code == 401
    assert reused.json()["type"] == "urn:wingman:problem:refresh-token-reused"
    after = await refresh(client, second)
    assert after.status_code == 401
    assert after.json()["type"] == "urn:wingman:problem:refresh-token-revoked"


async def test_logout_revokes_the_family(
    client: AsyncTestClient[Litestar], signed_in: dict[str, Any]
) -> None:
    token = signed_in["refresh_token"]
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": token})
    assert response.status_code == 204
    refused = await refresh(client, token)
    assert refused.status_code == 401
    assert refused.json()["type"] == "urn:wingman:problem:refresh-token-revoked"


async def test_unknown_refresh_token_is_refused(client: AsyncTestClient[Litestar]) -> None:
    response = await refresh(client, "not-a-token")
    assert response.status_code == 401
    assert response.json()["type"] == "urn:wingman:problem:refresh-token-invalid"


def _claims(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def test_access_token_claims(signed_in: dict[str, Any]) -> None:
    claims = _claims(signed_in["access_token"])
    assert claims["sub"] == signed_in["user"]["id"]
    assert (claims["tier"], claims["role"], claims["iss"]) == ("free", "user", "wingman")
    assert claims["exp"] - claims["iat"] == 15 * 60


def _forge(claims: dict[str, Any], key: str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


async def test_bad_access_tokens_are_refused(
    client: AsyncTestClient[Litestar], signed_in: dict[str, Any], settings: Settings
) -> None:
    good = signed_in["access_token"]
    claims = _claims(good)
    now = datetime.now(UTC)
    header, _, signature = good.split(".")
    elevated = (
        base64.urlsafe_b64encode(json.dumps({**claims, "role": "admin"}).encode())
        .rstrip(b"=")
        .decode()
    )
    expired = {
        **claims,
        "iat": int((now - timedelta(hours=1)).timestamp()),
        "exp": int((now - timedelta(minutes=1)).timestamp()),
    }
    cases = {
        "tampered": f"{header}.{elevated}.{signature}",
        "expired": _forge(expired, settings.security.jwt_key),
        "wrong key": _forge(claims, "another-key-" + "x" * 32),
        "wrong issuer": _forge({**claims, "iss": "elsewhere"}, settings.security.jwt_key),
        "no algorithm": jwt.encode(claims, None, algorithm="none"),
        "garbage": "not.a.jwt",
    }
    assert (
        await client.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"})
    ).status_code == 200
    for name, token in cases.items():
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.headers["content-type"].startswith("application/problem+json"), name
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_disabled_user_is_locked_out(
    settings: Settings, otp_worker: WorkerLog, tmp_path: Path
) -> None:
    fast = msgspec.structs.replace(settings, auth=AuthSettings(status_cache_seconds=1))
    email = f"locked-{uuid.uuid4().hex[:8]}@example.org"
    async with AsyncTestClient(app=create_app(fast)) as client:
        tokens = await sign_in(client, otp_worker, "email", email)
        assert (await client.get("/api/v1/me", headers=bearer(tokens))).status_code == 200

        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "wingman.ctl", "users", "disable", email, "--json"],
            env=child_env(settings, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "disabled"

        # Refresh and sign-in check the database: refused at once.
        refused = await refresh(client, tokens["refresh_token"])
        assert refused.json()["type"] == "urn:wingman:problem:account-disabled"
        request_id = await request_code(client, "email", email)
        verify = await client.post(
            "/api/v1/auth/otp/verify",
            json={"request_id": request_id, "code": otp_worker.code_for(request_id)},
        )
        assert verify.status_code == 403
        # The access token stops working at once: the change is announced to every process (and
        # where it is not heard, the cached status expires: 1 s here, 30 s by default).
        locked = await _first_refusal(client, tokens, within=5)
        assert locked.status_code == 401
        assert locked.json()["type"] == "urn:wingman:problem:account-disabled"


async def test_status_is_cached_between_requests(settings: Settings, otp_worker: WorkerLog) -> None:
    # With a long TTL a disable is not seen yet: proof that requests do not each query the row.
    slow = msgspec.structs.replace(settings, auth=AuthSettings(status_cache_seconds=60))
    async with AsyncTestClient(app=create_app(slow)) as client:
        tokens = await sign_in(client, otp_worker, "email", f"c-{uuid.uuid4().hex[:8]}@example.org")
        assert (await client.get("/api/v1/me", headers=bearer(tokens))).status_code == 200
        await _set_status(settings, tokens["user"]["id"], "deleted")
        assert (await client.get("/api/v1/me", headers=bearer(tokens))).status_code == 200
        app_resources(client.app).user_status.forget(uuid.UUID(tokens["user"]["id"]))
        assert (await client.get("/api/v1/me", headers=bearer(tokens))).status_code == 401


async def test_status_cache_is_long_only_while_changes_are_heard(
    settings: Settings, otp_worker: WorkerLog, redis_queue: Redis
) -> None:
    # While the process hears account changes an entry outlives auth.status_cache_seconds (the
    # changes through Wingman are announced); losing the subscription drops every entry.
    quick = msgspec.structs.replace(
        settings, auth=AuthSettings(status_cache_seconds=1, status_cache_heard_seconds=3600)
    )
    async with AsyncTestClient(app=create_app(quick)) as client:
        cache = app_resources(client.app).user_status
        assert await until(lambda: cache.heard, within=10.0)
        tokens = await sign_in(client, otp_worker, "email", f"h-{uuid.uuid4().hex[:8]}@example.org")
        assert (await client.get("/api/v1/me", headers=bearer(tokens))).status_code == 200
        # The entry was kept for the heard TTL, far past the short one...
        _, expires = cache._entries[uuid.UUID(tokens["user"]["id"])]
        assert expires - time.monotonic() > 60
        # ...so a change by hand (not announced) is not seen yet.
        await _set_status(settings, tokens["user"]["id"], "disabled")
        assert (await client.get("/api/v1/me", headers=bearer(tokens))).status_code == 200

        assert await redis_queue.client_kill_filter(_type="pubsub", skipme=True) >= 1
        refused = await _first_refusal(client, tokens, within=10)
        assert refused.status_code == 401
        assert refused.json()["type"] == "urn:wingman:problem:account-disabled"


async def _first_refusal(
    client: AsyncTestClient[Litestar], tokens: dict[str, Any], within: float
) -> httpx.Response:
    """The first answer to ``GET /me`` with ``tokens`` that is not a 200, asked every 50 ms for
    up to ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            answer = await client.get("/api/v1/me", headers=bearer(tokens))
            if answer.status_code != 200:
                return answer
            await asyncio.sleep(0.05)


async def _set_status(settings: Settings, user_id: str, status: str) -> None:
    engine = create_async_engine(settings.database.url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE users SET status = :status WHERE id = :id"),
                {"status": status, "id": uuid.UUID(user_id)},
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("status", ["disabled", "deleted"])
async def test_inactive_account_cannot_sign_in(
    client: AsyncTestClient[Litestar], otp_worker: WorkerLog, settings: Settings, status: str
) -> None:
    email = f"{status}-{uuid.uuid4().hex[:8]}@example.org"
    tokens = await sign_in(client, otp_worker, "email", email)
    await _set_status(settings, tokens["user"]["id"], status)
    request_id = await request_code(client, "email", email)
    response = await client.post(
        "/api/v1/auth/otp/verify",
        json={"request_id": request_id, "code": otp_worker.code_for(request_id)},
    )
    assert response.status_code == 403
    assert response.json()["type"] == "urn:wingman:problem:account-disabled"
