"""PostgreSQL restarted under traffic, against a real ``wingmanctl serve`` process.

The server gets a PostgreSQL cluster of its own (the session's shared one is left alone), which is
stopped with a fast shutdown while clients keep calling a repository read (``GET /me``), a keyset
list, a message page and the message post. While it is down every answer is a 503 problem with
Retry-After, never another 5xx; once it is back the pool replaces the dead connections as it
hands them out and every route answers again within seconds; and every post answered 202 is
committed with its AI message and has its reply job queued.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest

from tests.support.accounts import Caller, create_caller
from tests.support.polling import until
from tests.support.route_traffic import (
    KINDS,
    Traffic,
    assert_accepted_posts_kept,
    assert_refusals_were_unavailable,
    run_loop,
)
from tests.support.services import new_postgres, service_folder
from tests.support.web import WebServer, running_server
from wingman.config import DatabaseSettings, Settings
from wingman.db.migrations import upgrade_to_head
from wingman.db.models import UserTier
from wingman.devstack.postgres import PostgresCluster
from wingman.server.database import create_engine

pytestmark = pytest.mark.e2e

# Seconds from the restarted server accepting connections to every route answering again.
RECOVERY_SECONDS = 10.0


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresCluster]:
    root = service_folder("wingman-restart-")
    postgres = new_postgres(root / "postgres", secrets.token_urlsafe(16))
    try:
        postgres.start()
        postgres.ensure_database("wingman")
        upgrade_to_head(postgres.url("wingman"))
        yield postgres
    finally:
        postgres.stop(mode="fast")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def restart_settings(settings: Settings, own_postgres: PostgresCluster) -> Settings:
    return msgspec.structs.replace(
        settings, database=DatabaseSettings(url=own_postgres.url("wingman"))
    )


@pytest.fixture(scope="module")
def server(
    restart_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    with running_server(restart_settings, tmp_path_factory.mktemp("restart")) as web:
        yield web


@pytest.fixture(scope="module")
async def caller(restart_settings: Settings) -> AsyncIterator[Caller]:
    # Premium: its chat and AI allowances hold the posts this test sends.
    engine = create_engine(restart_settings.database, "wingman-tests")
    try:
        yield await create_caller(engine, restart_settings, tier=UserTier.PREMIUM)
    finally:
        await engine.dispose()


async def test_requests_get_503_during_a_restart_and_succeed_after(
    server: WebServer, caller: Caller, own_postgres: PostgresCluster, restart_settings: Settings
) -> None:
    traffic = Traffic()
    async with httpx.AsyncClient(base_url=server.url, headers=caller.headers, timeout=30) as client:
        created = await client.post("/api/v1/sessions", json={"title": "restart"})
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        loops = [asyncio.create_task(run_loop(client, k, session_id, traffic)) for k in KINDS]
        try:
            began = time.monotonic()
            assert await until(lambda: all(traffic.succeeded(k, began) for k in KINDS), 20)

            stopping = time.monotonic()
            await asyncio.to_thread(own_postgres.stop, "fast")
            # Down until every route class has been refused at least once.
            down = await until(lambda: all(traffic.refused(k, stopping) for k in KINDS), 20)
            await asyncio.to_thread(own_postgres.start)
            back = time.monotonic()
            assert down, "not every route was refused while PostgreSQL was down"

            recovered = await until(
                lambda: all(traffic.succeeded(k, back) for k in KINDS), RECOVERY_SECONDS
            )
            recovery = max(traffic.first_success(k, back) - back for k in KINDS)
            print(
                f"every route answered again {recovery:.2f} s after PostgreSQL accepted connections"
            )
            assert recovered, f"not every route recovered within {RECOVERY_SECONDS} s"
        finally:
            traffic.running = False
            await asyncio.gather(*loops)

    failures = assert_refusals_were_unavailable(traffic)
    assert failures, "the outage was not seen by any request"
    await assert_accepted_posts_kept(traffic, restart_settings)
