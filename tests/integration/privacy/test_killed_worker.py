"""kill -9 of the heavy worker in the middle of an export and of a purge (real processes): the
job runs again on another worker and completes exactly once, no partial file remains, and
another account's rows are untouched."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.privacy.conftest import (
    count_rows,
    files_of,
    heavy_worker,
    poll,
    seed_chat,
)
from tests.support.accounts import Caller, create_caller
from tests.support.events import events_of
from tests.support.ratelimits import set_config
from wingman.config import Settings
from wingman.db.models import AuditLogEntry, UserRole
from wingman.domain.privacy.archive import verify


@pytest.fixture
async def no_deletion_grace(privacy_settings: Settings) -> AsyncIterator[None]:
    """Deleted accounts are purged at once, for this test only: the config row is shared by every
    test on the privacy database, so it is put back even when the test fails."""
    await set_config(privacy_settings, "privacy", {"deletion_grace_days": 0})
    try:
        yield
    finally:
        await set_config(privacy_settings, "privacy", {})


@pytest.mark.usefixtures("no_deletion_grace")
async def test_killed_heavy_workers_finish_an_export_and_a_purge_exactly_once(  # noqa: PLR0917
    privacy_client: AsyncTestClient[Litestar],
    privacy_settings: Settings,
    privacy_engine: AsyncEngine,
    privacy_redis: Redis,
    alice: Caller,
    bob: Caller,
    tmp_path: Path,
) -> None:
    client, engine = privacy_client, privacy_engine
    # Large enough that the archive takes a few seconds to write.
    await seed_chat(engine, alice.id, sessions=4, messages=60_000, marker="alice-words")
    await seed_chat(engine, bob.id, sessions=1, messages=500, marker="bob-words")
    alice_rows, bob_rows = await count_rows(engine, alice.id), await count_rows(engine, bob.id)
    folder = Path(privacy_settings.exports.dir)
    export = (await client.post("/api/v1/me/export", headers=alice.headers)).json()
    partial = folder / f".{export['id']}.zip.partial"

    async def export_status() -> Any:
        body = (
            await client.get(f"/api/v1/me/exports/{export['id']}", headers=alice.headers)
        ).json()
        return body if body["status"] == "ready" else None

    async def partial_written() -> bool:
        return partial.exists() and partial.stat().st_size > 64 * 1024

    with heavy_worker(privacy_settings, tmp_path) as doomed:
        await poll(partial_written, 60, "the export to be half written")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(5)
    with heavy_worker(privacy_settings, tmp_path) as survivor:
        done = await poll(export_status, 90, "the retried export", every=0.25)

        manifest = verify(folder / f"{export['id']}.zip")
        assert {t.name: t.rows for t in manifest.tables if t.name in alice_rows} == alice_rows
        assert files_of(folder, export["id"]) == [f"{export['id']}.zip"]
        assert done["size_bytes"] == (folder / f"{export['id']}.zip").stat().st_size
        ready = await events_of(privacy_redis, alice.id, "export.ready")
        assert [e.data["id"] for e in ready] == [export["id"]]

        # Now the purge: deleted with no grace, so it is enqueued at once.
        admin = await create_caller(engine, privacy_settings, role=UserRole.ADMIN)
        deleted = await client.delete(f"/api/v1/admin/users/{alice.id}", headers=admin.headers)
        assert deleted.status_code == 202, deleted.text

        async def messages_left() -> int:
            return (await count_rows(engine, alice.id))["messages"]

        async def purge_under_way() -> bool:
            return 0 < await messages_left() < alice_rows["messages"]

        await poll(purge_under_way, 60, "the purge to be under way", every=0.02)
        survivor.send_signal(signal.SIGKILL)
        survivor.wait(5)
    assert await messages_left() > 0  # killed half-way

    async def purged() -> bool:
        async with engine.connect() as connection:
            return not await connection.scalar(
                text("SELECT count(*) FROM users WHERE id = :u"), {"u": alice.id}
            )

    with heavy_worker(privacy_settings, tmp_path):
        await poll(purged, 90, "the retried purge", every=0.25)
    async with engine.connect() as connection:
        records = await connection.scalar(
            select(func.count()).where(
                AuditLogEntry.action == "users.purge", AuditLogEntry.target == f"user:{alice.id}"
            )
        )
    assert records == 1
    assert await count_rows(engine, alice.id) == dict.fromkeys(alice_rows, 0)
    assert await count_rows(engine, bob.id) == bob_rows
    assert files_of(folder, export["id"]) == []
