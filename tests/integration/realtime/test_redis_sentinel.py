"""A queue Redis behind Sentinel: the master is killed (``kill -9``) and every client follows.

One topology for the module (devstack/sentinel.py): a master, one replica and three Sentinels on
loopback, with a one-second ``down-after-milliseconds`` so a failover takes a few seconds. Each
test starts from a healed group (the killed server back, as a replica) and kills the master.

During the switch a call may fail, and only with a Redis connection error; afterwards calls are
served by the new master, where everything the old one had replicated is still there. A write
the old master acknowledged but had not yet sent to the replica is lost (asynchronous
replication): the tests make their writes before the kill replicated first (``WAIT``), and
docs/scale-out.md says what that means for jobs and events.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from saq import Worker

from tests.integration.realtime.conftest import close_code, open_socket, serving, token_of
from tests.integration.realtime.test_queue_redis_loss import next_frame, start, start_or_none
from tests.support.accounts import Caller
from tests.support.services import service_folder
from wingman.config import RedisSettings, Settings
from wingman.devstack.redis import RedisServer
from wingman.devstack.sentinel import SentinelGroup
from wingman.domain.realtime.events import EventBus
from wingman.domain.realtime.protocol import CloseCode
from wingman.job_recovery import RecoveringQueue
from wingman.ops.cluster_status import cluster_rows
from wingman.server.cluster import member_of, report
from wingman.server.redis import client, connect
from wingman.server.redis_mux import RedisMux

# From the kill until the clients are served again: detection (1 s), election and promotion.
FAILOVER_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    root = service_folder("wingman-sentinel-")
    group = SentinelGroup(root, secrets.token_urlsafe(16), master_name="wingman-queue")
    try:
        group.start()
        yield group
    finally:
        group.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def healthy(group: SentinelGroup) -> SentinelGroup:
    await asyncio.to_thread(group.heal)
    return group


@pytest.fixture
async def watcher(healthy: SentinelGroup) -> AsyncIterator[Redis]:
    """A client that follows the master, for the test's own checks."""
    redis = client(healthy.url(), timeout=2)
    try:
        yield redis
    finally:
        await redis.aclose()


async def replicated(redis: Redis) -> None:
    """Every write so far reached the replica (``WAIT``): it survives the master's death."""
    assert await redis.execute_command("WAIT", 1, 2000) == 1


async def kill_master(group: SentinelGroup) -> tuple[RedisServer, float]:
    return await asyncio.to_thread(group.kill_master), time.monotonic()


async def until_served(
    call: Callable[[], Awaitable[Any]], failures: list[BaseException], killed_at: float
) -> Any:
    """``call()``'s result once it succeeds; a Redis connection error meanwhile is noted and
    tried again, anything else fails the test."""
    while True:
        try:
            return await call()
        except RedisConnectionError as exc:
            failures.append(exc)
        assert time.monotonic() - killed_at < FAILOVER_WITHIN_S, f"still failing: {failures[-1]}"
        await asyncio.sleep(0.05)


async def test_the_mux_and_redis_py_follow_a_killed_master(
    healthy: SentinelGroup, watcher: Redis
) -> None:
    url = healthy.url()
    settings = RedisSettings(queue_url=url, socket_timeout=2.0)
    mux = RedisMux(url, timeout=2.0, name="failover-mux")
    pooled = connect(url, settings, "failover")
    key = f"failover:{uuid.uuid4().hex}"
    try:
        assert await mux.execute("SET", key, "before") == b"OK"
        assert await pooled.get(key) == b"before"
        await replicated(watcher)
        old, killed_at = await kill_master(healthy)

        mux_failures: list[BaseException] = []
        pooled_failures: list[BaseException] = []
        mux_port, pooled_port = await asyncio.gather(
            until_served(lambda: mux.execute("CONFIG", "GET", "port"), mux_failures, killed_at),
            until_served(lambda: pooled.config_get("port"), pooled_failures, killed_at),
        )
        new = healthy.master()
        assert new.port != old.port
        assert int(mux_port[1]) == new.port
        assert int(pooled_port["port"]) == new.port
        # The mux has no retries of its own: the call after the kill failed, as a lost
        # connection, and later calls found the new master.
        assert mux_failures
        assert all(isinstance(exc, RedisConnectionError) for exc in mux_failures + pooled_failures)
        assert await mux.execute("GET", key) == b"before"
        assert await mux.execute("INCR", f"{key}:after") == 1
        assert await pooled.get(f"{key}:after") == b"1"
        assert (await pooled.execute_command("ROLE"))[0] == b"master"
    finally:
        await mux.close()
        await pooled.aclose()


async def test_a_master_demoted_under_open_connections_is_left_for_the_new_one(
    healthy: SentinelGroup, watcher: Redis
) -> None:
    """``SENTINEL FAILOVER`` promotes the replica; the old master, demoted while the clients'
    connections to it stay open, answers writes with ``READONLY``: a lost connection to them."""
    url = healthy.url()
    mux = RedisMux(url, timeout=2.0, name="demotion-mux")
    pooled = connect(url, RedisSettings(queue_url=url, socket_timeout=2.0), "demotion")
    key = f"demotion:{uuid.uuid4().hex}"
    try:
        old = healthy.master()
        assert await mux.execute("SET", key, "before") == b"OK"
        # The pooled client reaches the same master: it reads what the mux wrote.
        assert await pooled.get(key) == b"before"
        await replicated(watcher)
        sentinel = Redis(port=healthy.sentinels[0].port, password=healthy.password)
        try:
            await sentinel.execute_command("SENTINEL", "FAILOVER", healthy.master_name)
        finally:
            await sentinel.aclose()
        switched_at = time.monotonic()
        new = await asyncio.to_thread(healthy.wait_for_new_master, old, FAILOVER_WITHIN_S)
        assert new is not None
        # Sentinel demotes the old master about 8 s later (and then closes its clients'
        # connections); demoting it now, with the connections left open, is the READONLY case.
        demoted = Redis(port=old.port, password=healthy.password)
        try:
            await demoted.execute_command("REPLICAOF", "127.0.0.1", new.port)
        finally:
            await demoted.aclose()

        mux_failures: list[BaseException] = []
        pooled_failures: list[BaseException] = []
        await until_served(lambda: mux.execute("INCR", f"{key}:n"), mux_failures, switched_at)
        await until_served(lambda: pooled.incr(f"{key}:n"), pooled_failures, switched_at)
        assert mux_failures
        assert all(isinstance(exc, RedisConnectionError) for exc in mux_failures + pooled_failures)
        assert int((await mux.execute("CONFIG", "GET", "port"))[1]) == new.port
        assert int((await pooled.config_get("port"))["port"]) == new.port
        # Checked through the mux: the watcher's idle connection may still be to the demoted
        # server, which serves reads (a replica's, stale until it has synced) without READONLY.
        assert await mux.execute("GET", f"{key}:n") == b"2"
        assert await mux.execute("GET", key) == b"before"
    finally:
        await mux.close()
        await pooled.aclose()


async def test_jobs_enqueued_before_and_during_a_failover_each_run_once(
    healthy: SentinelGroup, watcher: Redis
) -> None:
    queue = RecoveringQueue.at(healthy.url(), f"failover-{uuid.uuid4().hex[:8]}")
    runs: collections.Counter[str] = collections.Counter()
    progress = asyncio.Event()

    async def record(ctx: Any, *, name: str) -> None:
        runs[name] += 1
        progress.set()

    worker = Worker(queue, functions=[("record", record)], concurrency=4, dequeue_timeout=1.0)
    working = asyncio.create_task(worker.start())
    enqueue_failures: list[BaseException] = []

    async def enqueue(name: str, killed_at: float) -> None:
        # A retry after a connection error carries the same key: if the first attempt did land,
        # the second collapses into it.
        await until_served(
            lambda: queue.enqueue("record", key=name, name=name, timeout=30, retries=3),
            enqueue_failures,
            killed_at,
        )

    async def ran(names: list[str]) -> None:
        async with asyncio.timeout(FAILOVER_WITHIN_S):
            while not all(runs[name] for name in names):
                await progress.wait()
                progress.clear()

    try:
        before = [f"before-{n}" for n in range(20)]
        for name in before:
            await enqueue(name, time.monotonic())
        await ran(before)
        await replicated(watcher)

        _, killed_at = await kill_master(healthy)
        during = [f"during-{n}" for n in range(20)]
        for name in during:
            await enqueue(name, killed_at)
        await ran(during)

        assert enqueue_failures, "no enqueue met the failover"
        assert all(isinstance(exc, RedisConnectionError) for exc in enqueue_failures)
        assert set(runs) == set(before + during)
        assert set(runs.values()) == {1}
        # Nothing left that could run a second time.
        assert await queue.count("queued") == 0
        assert await queue.count("active") == 0
    finally:
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
        await worker.stop()
        await queue.disconnect()


async def test_sockets_resubscribe_and_resume_from_history_after_a_failover(
    healthy: SentinelGroup, watcher: Redis, ws_settings: Settings, caller: Caller
) -> None:
    redis = RedisSettings(queue_url=healthy.url(), cache_url=ws_settings.redis.cache_url)
    bus = EventBus(
        watcher,
        history_size=ws_settings.realtime.history_size,
        history_seconds=ws_settings.realtime.history_seconds,
    )
    async with serving(msgspec.structs.replace(ws_settings, redis=redis)) as url:
        async with open_socket(url, token_of(caller)) as ws:
            assert (await start(ws))["type"] == "resumed"
            before = await bus.publish(caller.id, "message.delta", {"n": 0})
            assert (await next_frame(ws))["event_id"] == before
            await replicated(watcher)

            _, killed_at = await kill_master(healthy)
            # The subscription broke: frames may have been missed, so the socket is closed.
            assert await close_code(ws) == CloseCode.TRY_AGAIN_LATER

        # Meanwhile an event is published (the publisher retries through the failover).
        failures: list[BaseException] = []
        missed = await until_served(
            lambda: bus.publish(caller.id, "message.delta", {"n": 1}), failures, killed_at
        )
        assert missed == before + 1
        assert all(isinstance(exc, RedisConnectionError) for exc in failures)

        # The client reconnects until the server subscribed again, and resumes from the
        # history on the new master: the event it missed, then live ones.
        while True:
            async with open_socket(url, token_of(caller)) as ws:
                answer = await start_or_none(ws, before)
                if answer is not None:
                    assert (answer["event_id"], answer["data"]) == (missed, {"n": 1})
                    resumed = await next_frame(ws)
                    assert (resumed["type"], resumed["data"]["replayed"]) == ("resumed", 1)
                    live = await bus.publish(caller.id, "message.delta", {"n": 2})
                    assert (await next_frame(ws))["event_id"] == live == missed + 1
                    break
            assert time.monotonic() - killed_at < FAILOVER_WITHIN_S, "the server did not recover"


async def test_status_reads_the_cluster_members_through_the_sentinels(
    healthy: SentinelGroup, watcher: Redis, settings: Settings
) -> None:
    node = msgspec.structs.replace(settings.node, role="app", name=f"node-{uuid.uuid4().hex[:8]}")
    redis = msgspec.structs.replace(settings.redis, queue_url=healthy.url())
    on_node = msgspec.structs.replace(settings, node=node, redis=redis)
    await report(watcher, member_of(on_node, "up", time.time()))

    rows = {row.name: row for row in await cluster_rows(on_node)}

    assert rows[node.name].state == "ok", rows[node.name].value
    assert rows[node.name].value.startswith("up, app at ")
