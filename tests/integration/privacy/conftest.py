"""Privacy fixtures: a database, a queue Redis and an export folder of their own, real workers.

Heavy workers take every job of their queue, and the sweep scans every deleted account of its
database: a separate database and Redis database keep other tests' rows and jobs out.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller, create_caller
from tests.support.services import PrivateServices, child_env
from wingman.app import create_app
from wingman.config import ExportSettings, ImportSettings, QueueSettings, RedisSettings, Settings
from wingman.db.migrations import upgrade_to_head
from wingman.server.database import create_engine

PRIVACY_DATABASE = "wingman_privacy"
PRIVACY_REDIS_DB = 7


@pytest.fixture(scope="session")
def privacy_settings(services: PrivateServices) -> Iterator[Settings]:
    services.postgres.ensure_database(PRIVACY_DATABASE)
    upgrade_to_head(services.postgres.url(PRIVACY_DATABASE))
    base = services.settings(PRIVACY_DATABASE)
    # A killed worker's job is swept within seconds: a 2 s heartbeat, a sweep every second.
    queues = dict(base.worker.queues)
    queues["heavy"] = QueueSettings(concurrency=1, timeout=300, retries=3, heartbeat=2)
    folder = Path(tempfile.mkdtemp(prefix="wingman-exports-"))
    try:
        yield msgspec.structs.replace(
            base,
            worker=msgspec.structs.replace(
                base.worker, queues=queues, sweep_seconds=1, shutdown_grace=5
            ),
            redis=RedisSettings(
                queue_url=services.redis_queue.url(PRIVACY_REDIS_DB),
                cache_url=services.redis_cache.url(),
            ),
            exports=ExportSettings(dir=str(folder / "exports")),
            # Uploads of transcripts: a folder of these tests' own, not the shared default.
            imports=ImportSettings(dir=str(folder / "imports")),
        )
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.fixture(scope="module")
async def privacy_engine(privacy_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(privacy_settings.database, "wingman-privacy-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def privacy_redis(privacy_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(privacy_settings.redis.queue_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def privacy_client(privacy_settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(privacy_settings)) as client:
        yield client


@pytest.fixture(autouse=True)
async def fresh_allowances(privacy_redis: Redis) -> None:
    keys = [key async for key in privacy_redis.scan_iter(match="wingman:ratelimit*")]
    if keys:
        await privacy_redis.delete(*keys)


@pytest.fixture
async def alice(privacy_engine: AsyncEngine, privacy_settings: Settings) -> Caller:
    return await create_caller(privacy_engine, privacy_settings)


@pytest.fixture
async def bob(privacy_engine: AsyncEngine, privacy_settings: Settings) -> Caller:
    return await create_caller(privacy_engine, privacy_settings)


@contextmanager
def heavy_worker(settings: Settings, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``wingmanctl worker --queue heavy``; SIGTERM (then SIGKILL) when the block ends."""
    home = folder / f"heavy-{os.urandom(3).hex()}"
    env = child_env(settings, home)
    with (home / "worker.log").open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wingman", "worker", "--queue", "heavy"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def seed_chat(
    engine: AsyncEngine, user_id: UUID, *, sessions: int, messages: int, marker: str
) -> None:
    """``sessions`` sessions of ``messages`` messages each, and an event per session, written
    server-side; every text carries ``marker``, so an archive can be searched for it."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO target_profiles (id, user_id, name, notes)"
                " VALUES (gen_random_uuid(), :user_id, CAST(:marker AS text),"
                " CAST(:marker AS text))"
            ),
            {"user_id": user_id, "marker": marker},
        )
        await connection.execute(
            text(
                "CREATE TEMP TABLE seeded ON COMMIT DROP AS SELECT gen_random_uuid() AS id"
                " FROM generate_series(1, :sessions)"
            ),
            {"sessions": sessions},
        )
        await connection.execute(
            text(
                "INSERT INTO chat_sessions (id, user_id, title, status, message_count)"
                " SELECT id, :user_id, CAST(:marker AS text), 'active', :messages FROM seeded"
            ),
            {"user_id": user_id, "marker": marker, "messages": messages},
        )
        await connection.execute(
            text(
                "INSERT INTO messages (id, session_id, sender, content, processing_status,"
                " created_at, updated_at)"
                " SELECT gen_random_uuid(), s.id, CASE WHEN n % 2 = 0 THEN 'ai' ELSE 'user' END,"
                " CAST(:marker AS text) || ' line ' || n, 'done', now() + n * interval '1 ms',"
                " now() + n * interval '1 ms'"
                " FROM seeded s CROSS JOIN generate_series(1, :messages) AS n"
            ),
            {"marker": marker, "messages": messages},
        )
        await connection.execute(
            text(
                "INSERT INTO session_events (id, session_id, user_id, type, payload)"
                " SELECT gen_random_uuid(), id, :user_id, 'liked',"
                " jsonb_build_object('m', CAST(:marker AS text))"
                " FROM seeded"
            ),
            {"user_id": user_id, "marker": marker},
        )


async def count_rows(engine: AsyncEngine, user_id: UUID) -> dict[str, int]:
    """The user's rows per exported table."""
    queries = {
        "account": "SELECT count(*) FROM users WHERE id = :u",
        "profiles": "SELECT count(*) FROM target_profiles WHERE user_id = :u",
        "sessions": "SELECT count(*) FROM chat_sessions WHERE user_id = :u",
        "messages": "SELECT count(*) FROM messages m JOIN chat_sessions s"
        " ON s.id = m.session_id WHERE s.user_id = :u",
        "events": "SELECT count(*) FROM session_events WHERE user_id = :u",
    }
    async with engine.connect() as connection:
        return {
            name: int((await connection.execute(text(sql), {"u": user_id})).scalar_one())
            for name, sql in queries.items()
        }


def files_of(folder: Path, export_id: str) -> list[str]:
    """The names in the export folder that belong to ``export_id``."""
    return sorted(p.name for p in folder.iterdir() if export_id in p.name)


async def poll(check: Any, within: float, what: str, every: float = 0.1) -> Any:
    """Await ``check()`` until it returns something truthy (at most ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)
