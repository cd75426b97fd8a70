"""An exhausted database pool is overload, not a bug: against a real ``wingmanctl serve`` with a
one-connection pool, a request that cannot get a connection within the pool timeout is answered
503 with Retry-After, the one holding the connection still completes, and /metrics counts it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from tests.support.accounts import create_caller
from tests.support.services import child_env, wait_until_ready
from wingman.config import ServerSettings, Settings
from wingman.devstack.processes import free_port
from wingman.server.database import create_engine

pytestmark = pytest.mark.e2e


@pytest.fixture
def tight_server(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``wingmanctl serve`` with a one-connection pool that waits 1 s (the limiter off)."""
    tight = msgspec.structs.replace(
        settings,
        database=msgspec.structs.replace(
            settings.database, pool_size=1, max_overflow=0, pool_timeout=1
        ),
        server=ServerSettings(rate_limits=False),
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "web.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wingman", "serve", "--workers", "1", "--port", str(port)],
            env=child_env(tight, tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert wait_until_ready(url), log_path.read_text()[-3000:]
        yield url, log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def test_a_request_waiting_past_the_pool_timeout_gets_503(
    settings: Settings, tight_server: tuple[str, Path]
) -> None:
    url, log_path = tight_server
    engine = create_engine(settings.database, "wingman-tests")
    try:
        caller = await create_caller(engine, settings)
    finally:
        await engine.dispose()
    database = settings.database.url.replace("postgresql+psycopg://", "postgresql://")
    async with httpx.AsyncClient(base_url=url, headers=caller.headers, timeout=30) as client:
        assert (await client.get("/api/v1/me")).status_code == 200
        # Hold the caller's row: a PATCH then waits on the lock with the only connection.
        async with await psycopg.AsyncConnection.connect(database) as locker:
            await locker.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (caller.id,))
            patch = asyncio.ensure_future(client.patch("/api/v1/me", json={"display_name": "Held"}))
            await asyncio.sleep(0.5)
            busy = await client.get("/api/v1/me")
            await locker.rollback()
        assert busy.status_code == 503, busy.text
        assert busy.headers["Retry-After"] == "2"
        assert busy.json()["type"] == "urn:wingman:problem:server-busy"
        assert (await patch).status_code == 200
        assert (await client.get("/api/v1/me")).json()["display_name"] == "Held"
        metrics = (await client.get("/metrics")).text
        assert "wingman_db_pool_timeouts_total 1.0" in metrics
    assert "database_pool_exhausted" in log_path.read_text()
