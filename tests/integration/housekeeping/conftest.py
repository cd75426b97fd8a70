"""Housekeeping fixtures: a database and a queue Redis of their own, and a real heavy worker.

The retention sweep deletes across whole tables and the heavy worker takes every job of its
queue, so these tests keep other tests' rows and jobs out of their way.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller, create_caller
from tests.support.services import PrivateServices, child_env
from wingman.app import create_app
from wingman.config import ImportSettings, QueueSettings, RedisSettings, Settings
from wingman.db.migrations import upgrade_to_head
from wingman.db.models import UserRole
from wingman.server.database import create_engine

DATABASE = "wingman_housekeeping"
REDIS_DB = 8
# Small, so that the size cap is cheap to cross.
MAX_IMPORT_BYTES = 64 * 1024


@pytest.fixture(scope="session")
def hk_settings(services: PrivateServices) -> Iterator[Settings]:
    services.postgres.ensure_database(DATABASE)
    upgrade_to_head(services.postgres.url(DATABASE))
    base = services.settings(DATABASE)
    queues = dict(base.worker.queues)
    queues["heavy"] = QueueSettings(concurrency=2, timeout=60, retries=1, heartbeat=5)
    with tempfile.TemporaryDirectory(prefix="wingman-imports-") as folder:
        yield msgspec.structs.replace(
            base,
            worker=msgspec.structs.replace(base.worker, queues=queues, sweep_seconds=1),
            redis=RedisSettings(
                queue_url=services.redis_queue.url(REDIS_DB),
                cache_url=services.redis_cache.url(),
            ),
            imports=ImportSettings(dir=folder, max_bytes=MAX_IMPORT_BYTES),
        )


@pytest.fixture(scope="module")
async def hk_engine(hk_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(hk_settings.database, "wingman-housekeeping-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def hk_redis(hk_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(hk_settings.redis.queue_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def hk_client(hk_settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(hk_settings)) as client:
        yield client


@pytest.fixture
async def owner(hk_engine: AsyncEngine, hk_settings: Settings) -> Caller:
    return await create_caller(hk_engine, hk_settings)


@pytest.fixture
async def stranger(hk_engine: AsyncEngine, hk_settings: Settings) -> Caller:
    return await create_caller(hk_engine, hk_settings)


@pytest.fixture
async def operator(hk_engine: AsyncEngine, hk_settings: Settings) -> Caller:
    return await create_caller(hk_engine, hk_settings, role=UserRole.ADMIN)


@pytest.fixture(scope="module")
def heavy_worker(
    hk_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``heavy`` worker process for the module's tests."""
    folder: Path = tmp_path_factory.mktemp("heavy-worker")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wingman", "worker", "--queue", "heavy"],
        env=child_env(hk_settings, folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
