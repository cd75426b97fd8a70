"""``wingmanctl config`` through its real command line."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.cli import run_cli
from tests.support.services import child_env
from wingman.config import Settings
from wingman.db.models import AuditLogEntry, GlobalConfig
from wingman.domain.catalog.registry import REGISTRY


@pytest.fixture
async def env(settings: Settings, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The CLI's environment; no stored config before or after the test."""
    engine = create_async_engine(settings.database.url)
    async with engine.begin() as connection:
        await connection.execute(delete(GlobalConfig))
    try:
        yield child_env(settings, tmp_path)
    finally:
        async with engine.begin() as connection:
            await connection.execute(delete(GlobalConfig))
        await engine.dispose()


async def ctl(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(run_cli, "wingman.ctl", "config", *args, env=env)
    return result.returncode, result.stdout, result.stderr


async def test_list_shows_every_key(env: dict[str, str]) -> None:
    code, out, err = await ctl(env, "list", "--json")
    assert code == 0, err
    items = json.loads(out)
    assert [item["key"] for item in items] == list(REGISTRY)
    code, out, _ = await ctl(env, "list")
    assert code == 0
    assert "limits.message" in out


async def test_set_validates_stores_audits_and_reaches_running_processes(
    env: dict[str, str],
    settings: Settings,
    client: AsyncTestClient[Litestar],
    user_headers: dict[str, str],
) -> None:
    warm = await client.get("/api/v1/config", headers=user_headers)
    assert warm.json()["features"]["regenerate"] is True

    code, out, err = await ctl(env, "set", "features", '{"regenerate": false}', "--json")
    assert code == 0, err
    change = json.loads(out)
    assert change["old"]["regenerate"] is True
    assert change["new"]["regenerate"] is False

    code, out, err = await ctl(env, "get", "features", "--json")
    assert code == 0, err
    assert json.loads(out)["value"]["regenerate"] is False

    deadline = time.monotonic() + 1.0
    while True:
        body = (await client.get("/api/v1/config", headers=user_headers)).json()
        if body["features"]["regenerate"] is False:
            break
        assert time.monotonic() < deadline, "the app still serves the old value after 1 s"
        await asyncio.sleep(0.02)

    engine = create_async_engine(settings.database.url)
    try:
        async with engine.connect() as connection:
            row = (
                (
                    await connection.execute(
                        select(AuditLogEntry)
                        .where(AuditLogEntry.target == "config:features")
                        .order_by(AuditLogEntry.id.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .one()
            )
    finally:
        await engine.dispose()
    assert row["actor"].startswith("cli:")
    assert row["actor_id"] is None
    assert row["details"]["new"]["regenerate"] is False


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("set", "limits.message", '{"max_content_length": 0}'), "max_content_length"),
        (("set", "rate_limits", '{"chat": {"limit": 5, "period": "week"}}'), "chat.period"),
        (("set", "features", "{not json"), "not valid JSON"),
        (("set", "nope", "{}"), "unknown config key"),
        (("get", "nope"), "unknown config key"),
    ],
)
async def test_bad_input_is_a_usage_error(
    env: dict[str, str], args: tuple[str, ...], needle: str
) -> None:
    code, _, err = await ctl(env, *args)
    assert code == 64, err
    assert needle in err
    code, out, _ = await ctl(env, "list", "--json")
    assert all(item["stored"] is False for item in json.loads(out))
