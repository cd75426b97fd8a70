"""``DELETE /me`` confirmed by a one-time code: locked out at once (tokens, refresh), restored
by signing in during the grace period, refused after it; the admin API's delete and restore."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.accounts.conftest import (
    WorkerLog,
    bearer,
    request_code,
    sign_in,
    start_worker,
    stop_worker,
)
from tests.support.accounts import create_caller
from tests.support.ratelimits import set_rate_limits
from wingman.config import Settings
from wingman.db.models import AuditLogEntry, UserRole


@pytest.fixture(scope="module")
def otp_worker(
    privacy_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerLog]:
    worker = start_worker(privacy_settings, tmp_path_factory.mktemp("privacy-otp"))
    try:
        yield worker
    finally:
        stop_worker(worker)


@pytest.fixture(autouse=True)
async def roomy_codes(privacy_settings: Settings) -> AsyncIterator[None]:
    """These tests ask for more codes from one address than a minute's allowance."""
    await set_rate_limits(privacy_settings, {"otp": {"limit": 100, "period": "minute"}})
    yield
    await set_rate_limits(privacy_settings, {})


async def code_for(
    client: AsyncTestClient[Litestar], worker: WorkerLog, email: str
) -> dict[str, Any]:
    request_id = await request_code(client, "email", email)
    return {"request_id": request_id, "code": worker.code_for(request_id)}


async def test_delete_me_locks_out_at_once_and_signing_in_restores(
    privacy_client: AsyncTestClient[Litestar], otp_worker: WorkerLog, privacy_engine: AsyncEngine
) -> None:
    client = privacy_client
    email = f"leaver-{time.time_ns()}@example.org"
    tokens = await sign_in(client, otp_worker, "email", email)
    user_id = tokens["user"]["id"]

    # A code sent elsewhere does not confirm this account's deletion.
    stranger = await code_for(client, otp_worker, f"other-{time.time_ns()}@example.org")
    refused = await client.request("DELETE", "/api/v1/me", json=stranger, headers=bearer(tokens))
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:wingman:problem:otp-not-for-this-account"
    wrong = await code_for(client, otp_worker, email)
    wrong["code"] = "000000" if wrong["code"] != "000000" else "111111"
    bad = await client.request("DELETE", "/api/v1/me", json=wrong, headers=bearer(tokens))
    assert bad.status_code == 400

    confirm = await code_for(client, otp_worker, email)
    deleted = await client.request("DELETE", "/api/v1/me", json=confirm, headers=bearer(tokens))
    assert deleted.status_code == 202, deleted.text
    body = deleted.json()
    assert body["status"] == "deleted"
    grace = datetime.fromisoformat(body["purge_after"]) - datetime.fromisoformat(body["deleted_at"])
    assert grace == timedelta(days=7)

    # Locked out: the access token, the refresh token.
    assert (await client.get("/api/v1/me", headers=bearer(tokens))).status_code == 401
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 401
    async with privacy_engine.connect() as connection:
        live = await connection.scalar(
            text("SELECT count(*) FROM refresh_tokens WHERE user_id = :u AND revoked_at IS NULL"),
            {"u": user_id},
        )
    assert live == 0

    # Signing in during the grace period restores the account.
    again = await sign_in(client, otp_worker, "email", email)
    assert again["user"]["id"] == user_id
    assert again["user"]["status"] == "active"
    me = await client.get("/api/v1/me", headers=bearer(again))
    assert me.status_code == 200
    async with privacy_engine.connect() as connection:
        entries = (
            await connection.execute(
                select(AuditLogEntry.action, AuditLogEntry.actor, AuditLogEntry.details).where(
                    AuditLogEntry.target == f"user:{user_id}"
                )
            )
        ).all()
    assert [e.action for e in entries] == ["users.delete", "users.restore"]
    assert email not in str(entries)

    # Deleted again, and the grace period is over: sign-in is refused.
    confirm = await code_for(client, otp_worker, email)
    assert (
        await client.request("DELETE", "/api/v1/me", json=confirm, headers=bearer(again))
    ).status_code == 202
    async with privacy_engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET purge_after = :t WHERE id = :u"),
            {"t": datetime.now(UTC) - timedelta(seconds=1), "u": user_id},
        )
    request = await code_for(client, otp_worker, email)
    late = await client.post("/api/v1/auth/otp/verify", json=request)
    assert late.status_code == 403
    assert late.json()["type"] == "urn:wingman:problem:account-disabled"


async def test_admin_deletes_restores_and_exports_an_account(
    privacy_client: AsyncTestClient[Litestar],
    privacy_engine: AsyncEngine,
    privacy_settings: Settings,
) -> None:
    client = privacy_client
    admin = await create_caller(privacy_engine, privacy_settings, role=UserRole.ADMIN)
    user = await create_caller(privacy_engine, privacy_settings)
    url = f"/api/v1/admin/users/{user.id}"
    # Not for users, and not on oneself.
    assert (await client.delete(url, headers=user.headers)).status_code == 403
    self_delete = await client.delete(f"/api/v1/admin/users/{admin.id}", headers=admin.headers)
    assert self_delete.status_code == 409
    assert (await client.post(f"{url}/restore", headers=admin.headers)).status_code == 409

    deleted = await client.delete(url, headers=admin.headers)
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["status"] == "deleted"
    assert deleted.json()["purge_after"]
    assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 401
    restored = await client.post(f"{url}/restore", headers=admin.headers)
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] == "active"
    assert restored.json()["purge_after"] is None
    assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 200

    exported = await client.post(f"{url}/exports", headers=admin.headers)
    assert exported.status_code == 202
    assert exported.json()["status"] == "pending"
    assert (await client.post(f"{url}/exports", headers=admin.headers)).status_code == 409
    # The user sees the export the admin started.
    mine = await client.get(f"/api/v1/me/exports/{exported.json()['id']}", headers=user.headers)
    assert mine.status_code == 200
    missing = await client.delete(
        "/api/v1/admin/users/00000000-0000-7000-8000-000000000000", headers=admin.headers
    )
    assert missing.status_code == 404
    async with privacy_engine.connect() as connection:
        actions = list(
            await connection.scalars(
                select(AuditLogEntry.action)
                .where(AuditLogEntry.target == f"user:{user.id}")
                .order_by(AuditLogEntry.created_at)
            )
        )
    assert actions == ["users.delete", "users.restore", "users.export"]
