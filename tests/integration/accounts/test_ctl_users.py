"""``wingmanctl users``: create the first admin, then manage accounts; every change audited."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.accounts.conftest import WorkerLog, sign_in
from tests.support.cli import users_ctl
from wingman.config import Settings


async def test_create_admin_then_sign_in_as_admin(
    settings: Settings, tmp_path: Path, client: AsyncTestClient[Litestar], otp_worker: WorkerLog
) -> None:
    email = f"Admin-{uuid.uuid4().hex[:8]}@Example.org"
    created = users_ctl(settings, tmp_path, "create-admin", "--email", email, "--json")
    assert created.returncode == 0, created.stderr
    row: dict[str, Any] = json.loads(created.stdout)
    assert (row["email"], row["role"], row["tier"]) == (email.lower(), "admin", "free")
    assert "created a new admin account" in created.stderr

    again = users_ctl(settings, tmp_path, "create-admin", "--email", email.lower(), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["id"] == row["id"]

    tokens = await sign_in(client, otp_worker, "email", email)
    assert tokens["user"]["id"] == row["id"]
    assert tokens["user"]["role"] == "admin"

    engine = create_async_engine(settings.database.url)
    try:
        async with engine.connect() as connection:
            actions = (
                await connection.scalars(
                    text("SELECT action FROM audit_log WHERE target = :id ORDER BY created_at"),
                    {"id": row["id"]},
                )
            ).all()
    finally:
        await engine.dispose()
    assert actions == ["users.create_admin", "users.create_admin"]


def test_set_tier_disable_enable_and_list(settings: Settings, tmp_path: Path) -> None:
    phone = f"+1415555{uuid.uuid4().int % 10_000:04d}"
    created = users_ctl(settings, tmp_path, "create-admin", "--phone", phone, "--json")
    assert created.returncode == 0, created.stderr

    tier = users_ctl(settings, tmp_path, "set-tier", phone, "premium", "--json")
    assert json.loads(tier.stdout)["tier"] == "premium"
    disabled = users_ctl(settings, tmp_path, "disable", phone, "--json")
    assert json.loads(disabled.stdout)["status"] == "disabled"
    enabled = users_ctl(settings, tmp_path, "enable", phone, "--json")
    assert json.loads(enabled.stdout)["status"] == "active"
    listed = users_ctl(settings, tmp_path, "list", "--search", phone[2:], "--json")
    assert [row["phone"] for row in json.loads(listed.stdout)] == [phone]


def test_usage_errors(settings: Settings, tmp_path: Path) -> None:
    assert users_ctl(settings, tmp_path, "create-admin").returncode == 64
    assert users_ctl(settings, tmp_path, "create-admin", "--email", "nope").returncode == 64
    missing = users_ctl(settings, tmp_path, "disable", "nobody@example.org")
    assert missing.returncode == 64
    assert "no user matches" in missing.stderr
