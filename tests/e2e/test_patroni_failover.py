"""PostgreSQL failover under Patroni, under traffic, against a real ``wingmanctl serve`` process.

Two PostgreSQL nodes under Patroni (etcd as its store, synchronous replication) and a server
whose ``database.url`` names both members with ``target_session_attrs=read-write``, as
docs/scale-out.md tells an operator to write it. The leader is killed with ``kill -9`` (Patroni
and PostgreSQL) while clients keep calling a repository read, a keyset list, a message page and
the message post. Until the standby is promoted every failed answer is a 503 problem with
Retry-After; after it the pool reconnects to the new primary by itself, every route answers
again, and every post answered 202 is there with its AI message and reply job: synchronous
replication lost no acknowledged write. The old leader then rejoins as a standby, and a backup
through the same URL passes over it to dump the new primary.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

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
from tests.support.services import service_folder
from tests.support.tools import required_tool
from tests.support.web import WebServer, running_server
from wingman.config import DatabaseSettings, Settings
from wingman.db.migrations import upgrade_to_head
from wingman.db.models import UserTier
from wingman.devstack.patroni import PatroniCluster
from wingman.ops.backups import create_backup
from wingman.server.database import create_engine

pytestmark = pytest.mark.e2e

# Seconds from the kill to the standby taking writes: Patroni's ttl (10 s) bounds it.
FAILOVER_SECONDS = 30.0
# Seconds from the new primary taking writes to every route answering again.
RECOVERY_SECONDS = 10.0


@pytest.fixture(scope="module")
def patroni() -> Iterator[PatroniCluster]:
    required_tool("patroni", "patroni")
    required_tool("etcd", "etcd-server")
    root = service_folder("wingman-patroni-")
    cluster = PatroniCluster(root, secrets.token_urlsafe(16))
    try:
        began = time.monotonic()
        cluster.start()
        print(f"Patroni cluster streaming in sync {time.monotonic() - began:.1f} s after start")
        cluster.ensure_database("wingman")
        upgrade_to_head(cluster.url("wingman"))
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def failover_settings(settings: Settings, patroni: PatroniCluster) -> Settings:
    return msgspec.structs.replace(settings, database=DatabaseSettings(url=patroni.url("wingman")))


@pytest.fixture(scope="module")
def server(
    failover_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    with running_server(failover_settings, tmp_path_factory.mktemp("patroni")) as web:
        yield web


@pytest.fixture(scope="module")
async def caller(failover_settings: Settings) -> AsyncIterator[Caller]:
    # Premium: its chat and AI allowances hold the posts this test sends.
    engine = create_engine(failover_settings.database, "wingman-tests")
    try:
        yield await create_caller(engine, failover_settings, tier=UserTier.PREMIUM)
    finally:
        await engine.dispose()


async def test_a_killed_leader_is_replaced_and_no_acknowledged_write_is_lost(
    server: WebServer,
    caller: Caller,
    patroni: PatroniCluster,
    failover_settings: Settings,
    tmp_path: Path,
) -> None:
    backups = tmp_path / "backups"
    traffic = Traffic()
    async with httpx.AsyncClient(base_url=server.url, headers=caller.headers, timeout=30) as client:
        created = await client.post("/api/v1/sessions", json={"title": "failover"})
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        loops = [asyncio.create_task(run_loop(client, k, session_id, traffic)) for k in KINDS]
        try:
            began = time.monotonic()
            assert await until(lambda: all(traffic.succeeded(k, began) for k in KINDS), 20)

            killed_at = time.monotonic()
            old = await asyncio.to_thread(patroni.kill_leader)
            new = await asyncio.to_thread(patroni.wait_for_new_leader, old, FAILOVER_SECONDS)
            promoted_at = time.monotonic()
            assert new is not None, f"no standby took over within {FAILOVER_SECONDS} s"

            recovered = await until(
                lambda: all(traffic.succeeded(k, promoted_at) for k in KINDS), RECOVERY_SECONDS
            )
            recovery = max(traffic.first_success(k, promoted_at) - killed_at for k in KINDS)
            print(
                f"new primary {new.name} took writes {promoted_at - killed_at:.1f} s after the "
                f"kill; every route answered again {recovery:.1f} s after the kill"
            )
            assert recovered, f"not every route recovered within {RECOVERY_SECONDS} s"
        finally:
            traffic.running = False
            await asyncio.gather(*loops)

    rejoin_began = time.monotonic()
    await asyncio.to_thread(patroni.restart, old)
    print(f"{old.name} rejoined as a standby in {time.monotonic() - rejoin_began:.1f} s")
    # The backup tools take the same URL: pg_dump passes over the standby to reach the primary.
    manifest = create_backup(failover_settings.database.url, backups, 1, lambda _: None)
    assert manifest.database_revision is not None

    failures = assert_refusals_were_unavailable(traffic)
    print(f"{len(traffic.answers)} answers, {len(failures)} refused with 503")
    await assert_accepted_posts_kept(traffic, failover_settings)
