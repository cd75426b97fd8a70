"""``wingmanctl users login-link``: a link that signs in once and never twice."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import create_caller
from tests.support.cli import users_ctl
from wingman.config import Settings
from wingman.db.models import UserRole

BASE = "https://wingman.example.test"


async def new_admin(engine: AsyncEngine, settings: Settings) -> dict[str, Any]:
    """An admin account made the quick way (the CLI's create-admin has tests of its own)."""
    caller = await create_caller(engine, settings, role=UserRole.ADMIN)
    async with engine.connect() as connection:
        email = await connection.scalar(
            text("SELECT email FROM users WHERE id = :id"), {"id": caller.id}
        )
    return {"id": str(caller.id), "email": email}


def link_for(settings: Settings, folder: Path, who: str, *args: str) -> dict[str, Any]:
    made = users_ctl(settings, folder, "login-link", who, "--base-url", BASE, "--json", *args)
    assert made.returncode == 0, made.stderr
    row: dict[str, Any] = json.loads(made.stdout)
    return row


async def test_a_link_signs_in_once_and_never_twice(
    settings: Settings, tmp_path: Path, client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    admin = await new_admin(engine, settings)
    # Plain output, as an admin reads it: the link alone on stdout, what to do on stderr.
    made = users_ctl(settings, tmp_path, "login-link", admin["email"], "--base-url", BASE)
    assert made.returncode == 0, made.stderr
    assert made.stdout.count("\n") == 1
    assert "single use, valid until" in made.stderr
    prefix = f"{BASE}/api/v1/auth/login-link#"
    assert made.stdout.startswith(prefix)
    token = made.stdout.strip().removeprefix(prefix)

    # Opening the link (a browser, a preview) loads a page and spends nothing.
    for _ in range(2):
        page = await client.get("/api/v1/auth/login-link")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "/api/v1/auth/login-link/sign-in.js" in page.text
    script = await client.get("/api/v1/auth/login-link/sign-in.js")
    assert script.status_code == 200
    assert 'fetch("/api/v1/auth/login-link"' in script.text

    signed_in = await client.post("/api/v1/auth/login-link", json={"token": token})
    assert signed_in.status_code == 200, signed_in.text
    tokens = signed_in.json()
    assert (tokens["user"]["id"], tokens["user"]["role"]) == (admin["id"], "admin")
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["email"] == admin["email"]

    again = await client.post("/api/v1/auth/login-link", json={"token": token})
    assert again.status_code == 400
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["type"] == "urn:wingman:problem:login-link-used"
    assert "already used" in again.json()["detail"]

    async with engine.connect() as connection:
        audited = (
            await connection.execute(
                text("SELECT actor, action FROM audit_log WHERE target = :id ORDER BY created_at"),
                {"id": admin["id"]},
            )
        ).all()
    assert [action for _, action in audited] == ["users.login_link", "auth.login_link"]
    assert audited[0][0].startswith("cli")
    assert audited[1][0] == f"user:{admin['id']}"


async def test_an_expired_or_forged_link_is_refused(
    settings: Settings, tmp_path: Path, client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    admin = await new_admin(engine, settings)
    link = link_for(settings, tmp_path, admin["email"], "--minutes", "1")
    assert link["link"] == f"{BASE}/api/v1/auth/login-link#{link['token']}"
    assert link["user_id"] == admin["id"]
    request_id, secret = link["token"].split(".", 1)
    forged = await client.post(
        "/api/v1/auth/login-link", json={"token": f"{request_id}.{'x' * len(secret)}"}
    )
    assert forged.status_code == 400
    assert forged.json()["type"] == "urn:wingman:problem:login-link-invalid"
    # A minute passes: move the link's expiry into the past rather than wait.
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE otp_requests SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": request_id},
        )
    expired = await client.post("/api/v1/auth/login-link", json={"token": link["token"]})
    assert expired.status_code == 400
    assert expired.json()["type"] == "urn:wingman:problem:login-link-expired"


async def test_unknown_and_disabled_users_get_no_link(
    settings: Settings, tmp_path: Path, engine: AsyncEngine
) -> None:
    missing = users_ctl(settings, tmp_path, "login-link", f"nobody-{uuid.uuid4().hex}@example.org")
    assert missing.returncode == 64
    assert "no user matches" in missing.stderr
    assert missing.stdout == ""

    user = await new_admin(engine, settings)
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET status = 'disabled' WHERE id = :id"), {"id": user["id"]}
        )
    refused = users_ctl(settings, tmp_path, "login-link", user["email"])
    assert refused.returncode == 3
    assert "is disabled" in refused.stderr
    assert refused.stdout == ""
