"""Catalog fixtures: a signed-in user and a signed-in admin (through the real sign-in flow)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.accounts.conftest import (  # noqa: F401 - fixtures used by this folder
    WorkerLog,
    bearer,
    fresh_rate_limits,
    otp_worker,
    sign_in,
)
from wingman.config import Settings
from wingman.db.models import User, UserRole


async def make_admin(settings: Settings, user_id: str) -> None:
    engine = create_async_engine(settings.database.url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(User).where(User.id == user_id).values(role=UserRole.ADMIN)
            )
    finally:
        await engine.dispose()


async def sign_in_admin(
    client: AsyncTestClient[Litestar], worker: WorkerLog, settings: Settings
) -> dict[str, Any]:
    """Sign in a fresh account, promote it, and refresh so the access token says ``admin``."""
    email = f"admin-{time.time_ns()}@example.org"
    tokens = await sign_in(client, worker, "email", email)
    await make_admin(settings, tokens["user"]["id"])
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 200, response.text
    refreshed: dict[str, Any] = response.json()
    assert refreshed["user"]["role"] == "admin"
    return refreshed


@pytest.fixture
async def user_headers(
    client: AsyncTestClient[Litestar],
    otp_worker: WorkerLog,  # noqa: F811 - the imported fixture
) -> dict[str, str]:
    tokens = await sign_in(client, otp_worker, "email", f"user-{time.time_ns()}@example.org")
    return bearer(tokens)


@pytest.fixture
async def admin(
    client: AsyncTestClient[Litestar],
    otp_worker: WorkerLog,  # noqa: F811 - the imported fixture
    settings: Settings,
) -> dict[str, Any]:
    return await sign_in_admin(client, otp_worker, settings)


@pytest.fixture
def admin_headers(admin: dict[str, Any]) -> dict[str, str]:
    return bearer(admin)
