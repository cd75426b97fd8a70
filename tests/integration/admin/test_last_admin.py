"""No interleaving of admin changes leaves no active admin (API and ``wingmanctl users``).

These tests run on a database of their own: the shared one holds many admins, and the rule is
about the last one. Each test first takes the admin role away from every account there, then
makes its own admins.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller, create_caller
from tests.support.cli import users_ctl
from tests.support.services import PrivateServices
from wingman.app import create_app
from wingman.config import AuthSettings, Settings
from wingman.db.migrations import upgrade_to_head
from wingman.db.models import User, UserRole, UserStatus
from wingman.server.database import create_engine

BASE = "/api/v1/admin/users"
ROUNDS = 50
# What one admin does to the other; the rounds cycle through every pair of these.
REMOVALS: list[dict[str, Any]] = [{"role": "user"}, {"status": "disabled"}]


@pytest.fixture(scope="module")
def own_settings(services: PrivateServices) -> Iterator[Settings]:
    """Settings on a freshly migrated database of this module's own. The status cache is off, so
    an account disabled in one round is active again for the next as soon as its row is."""
    name = f"t_admins_{uuid.uuid4().hex[:12]}"
    services.postgres.ensure_database(name)
    try:
        upgrade_to_head(services.postgres.url(name))
        yield services.settings(name, auth=AuthSettings(status_cache_seconds=0))
    finally:
        services.postgres.drop_database(name)


@pytest.fixture
async def own_engine(own_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(own_settings.database, "wingman-tests")
    try:
        async with engine.begin() as connection:
            await connection.execute(update(User).values(role=UserRole.USER))
        yield engine
    finally:
        await engine.dispose()


async def active_admins(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == UserRole.ADMIN, User.status == UserStatus.ACTIVE)
        )
    return int(count or 0)


async def reinstate(engine: AsyncEngine, *callers: Caller) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(User)
            .where(User.id.in_([caller.id for caller in callers]))
            .values(role=UserRole.ADMIN, status=UserStatus.ACTIVE)
        )


async def test_admins_removing_each_other_at_once_always_leave_one(
    own_settings: Settings, own_engine: AsyncEngine
) -> None:
    ann = await create_caller(own_engine, own_settings, role=UserRole.ADMIN)
    bob = await create_caller(own_engine, own_settings, role=UserRole.ADMIN)
    app = create_app(own_settings)
    refused = 0
    # One client (one event loop runs the app); each request has its own database connection.
    async with AsyncTestClient(app=app) as client:
        for round_ in range(ROUNDS):
            await reinstate(own_engine, ann, bob)
            ann_does = REMOVALS[round_ % 2]
            bob_does = REMOVALS[(round_ // 2) % 2]
            answers = await asyncio.gather(
                client.patch(f"{BASE}/{bob.id}", json=ann_does, headers=ann.headers),
                client.patch(f"{BASE}/{ann.id}", json=bob_does, headers=bob.headers),
            )
            assert await active_admins(own_engine) == 1, (round_, [a.text for a in answers])
            codes = sorted(answer.status_code for answer in answers)
            # The first change to commit wins. The other is refused: by the rule when it reached
            # it, or as a disabled caller (401) when its sign-in check came after that commit.
            assert codes[0] == 200, (round_, codes)
            assert codes[1] in (401, 409), (round_, codes)
            for answer in answers:
                if answer.status_code == 409:
                    assert answer.headers["content-type"].startswith("application/problem+json")
                    assert answer.json()["type"].endswith("last-admin")
                    refused += 1
    # Most rounds reach the rule from both sides; at least one must, or the race was not run.
    assert refused > 0


async def test_the_last_admin_cannot_be_removed_by_another_account_s_stale_token(
    own_settings: Settings, own_engine: AsyncEngine
) -> None:
    ann = await create_caller(own_engine, own_settings, role=UserRole.ADMIN)
    # Bob's token still says admin, but his account was demoted since.
    bob = await create_caller(own_engine, own_settings, role=UserRole.ADMIN)
    async with own_engine.begin() as connection:
        await connection.execute(update(User).where(User.id == bob.id).values(role=UserRole.USER))
    async with AsyncTestClient(app=create_app(own_settings)) as client:
        for body in REMOVALS:
            answer = await client.patch(f"{BASE}/{ann.id}", json=body, headers=bob.headers)
            assert answer.status_code == 409, answer.text
            assert answer.json()["type"].endswith("last-admin")
        # Another active admin makes the same change allowed.
        await reinstate(own_engine, bob)
        answer = await client.patch(f"{BASE}/{ann.id}", json={"role": "user"}, headers=bob.headers)
        assert answer.status_code == 200, answer.text
    assert await active_admins(own_engine) == 1


async def test_ctl_refuses_to_disable_the_last_admin(
    own_settings: Settings, own_engine: AsyncEngine, tmp_path: Path
) -> None:
    ann = await create_caller(own_engine, own_settings, role=UserRole.ADMIN)
    refused = users_ctl(own_settings, tmp_path, "disable", str(ann.id), "--json")
    assert refused.returncode == 3, refused.stderr
    assert "last active admin" in refused.stderr
    assert refused.stdout == ""
    assert await active_admins(own_engine) == 1

    bob = await create_caller(own_engine, own_settings, role=UserRole.ADMIN)
    done = users_ctl(own_settings, tmp_path, "disable", str(ann.id), "--json")
    assert done.returncode == 0, done.stderr
    assert msgspec.json.decode(done.stdout)["status"] == "disabled"
    again = users_ctl(own_settings, tmp_path, "disable", str(bob.id), "--json")
    assert again.returncode == 3
    assert await active_admins(own_engine) == 1
