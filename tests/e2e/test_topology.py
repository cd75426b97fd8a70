"""A CI-sized cluster in network namespaces on one machine, under a small chat load.

Each part runs in a namespace of its own, with its own address on a private bridge
(tests/support/netns.py); traffic flows only between them and to the test process on the
bridge:

- ``data``: PostgreSQL and PgBouncer (transaction pooling) in front of it;
- ``redis``: the Redis master, its replica and three Sentinels (both roles, two databases);
- ``app-a``, ``app-b``: an app node each, ``wingmanctl serve`` (node.role = app), an ``ai`` and a
  ``default`` worker, reaching PostgreSQL through PgBouncer and Redis through the Sentinels;
- ``lb``: HAProxy with the config ``wingmanctl lb render`` writes.

The load during every fault is the load profile (wingman.loadtest) in resilient mode at a small
user count (tests/support/profile_load.py): each simulated user signs in, holds a socket, lists
and opens sessions, posts messages and waits for their replies; a refused request is tried again
after its Retry-After, a dropped socket reconnects through HAProxy and resumes from the last
event id, and the users count all of it (503s, connection errors, reconnects, resumes, any other
5xx, and whether each message's reply arrived). Beside it, one user's REST loops
(tests/support/route_traffic.py) keep every answer with its time, for when service came back.
Every scenario checks that the profile saw no 5xx but 503 with Retry-After and that every message
it had accepted has exactly one reply, done, in the database and on its socket. One per test:

(a) every REST route and the WebSocket through HAProxy; a socket on node A receives the replies
    a worker on node B made;
(b) kill -9 of every process of node A: its sockets reconnect through HAProxy within 5 s and
    resume, and every reply ends exactly once (in the database);
(c) kill -9 of the Redis master: Sentinel promotes the replica, service is back within 30 s,
    no reply lost or doubled, no answer 500 (503 with Retry-After is allowed meanwhile);
(d) a PgBouncer restart: the pools reconnect and every write the API accepted is stored;
(e) ``wingmanctl status`` on node B lists the cluster and is healthy, degraded with node A down
    after it dies, and healthy again after it returns.

Recovery times and counts are printed (``-s``) and written to ``var/topology-figures.json``;
docs/scale-out.md carries them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller, create_caller
from tests.support.cli import run_cli
from tests.support.netns import Namespaces, unavailable_reason
from tests.support.profile_load import (
    ProfileLoad,
    assert_each_reply_once_in_database,
    assert_no_server_error,
    profile_load,
)
from tests.support.route_traffic import (
    KINDS,
    Traffic,
    assert_refusals_were_unavailable,
    run_loop,
)
from tests.support.services import child_env, service_folder, wait_until_ready
from wingman.config import (
    DatabaseSettings,
    NodeSettings,
    QueueSettings,
    RealtimeSettings,
    RedisSettings,
    ServerSettings,
    Settings,
    WorkerSettings,
)
from wingman.db.migrations import upgrade_to_head
from wingman.db.models import Message, UserTier
from wingman.devstack.pgbouncer import PgBouncer
from wingman.devstack.postgres import SUPERUSER, PostgresCluster
from wingman.devstack.processes import wait_for
from wingman.devstack.sentinel import SentinelGroup
from wingman.server.database import create_engine

_REASON = unavailable_reason()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_REASON is not None, reason=f"no network namespaces: {_REASON}"),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]
PARTS = ["lb", "app-a", "app-b", "data", "redis"]
WEB_PORT = 8000
LB_PORT = 8080
RECONNECT_BUDGET_S = 5.0
# The load profile's user count during each fault (the CI size).
PROFILE_USERS = 12
REDIS_FAILOVER_BUDGET_S = 30.0
FIGURES_FILE = Path(__file__).resolve().parents[2] / "var" / "topology-figures.json"
FIGURES: dict[str, dict[str, Any]] = {}


def _record(scenario: str, figures: dict[str, Any]) -> None:
    FIGURES[scenario] = figures
    print(f"\n{scenario}: {json.dumps(figures)}")
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(FIGURES, indent=2) + "\n")


class AppNode:
    """``wingmanctl serve`` and the ``ai`` and ``default`` workers inside the node's namespace."""

    def __init__(self, name: str, ns: Namespaces, settings: Settings, folder: Path) -> None:
        self.name = name
        self.ns = ns
        self.address = ns.address(name)
        self.settings = msgspec.structs.replace(
            settings,
            server=ServerSettings(
                host=self.address,
                port=WEB_PORT,
                workers=1,
                graceful_timeout=10,
                trusted_proxies=[ns.address("lb")],
            ),
            node=NodeSettings(role="app", name=name, drain_seconds=2.0),
            # The reconciler (default queue) enqueues a reply whose enqueue failed (Redis
            # switching masters) within seconds here, not the shipped minute.
            ai=msgspec.structs.replace(
                settings.ai, stale_after_seconds=5, reconcile_every_seconds=2
            ),
            realtime=RealtimeSettings(max_sockets_per_user=16),
            worker=WorkerSettings(
                # A short job heartbeat: a killed worker's replies are orphans within seconds.
                queues={
                    "ai": QueueSettings(concurrency=20, timeout=60, retries=3, heartbeat=3),
                    "default": QueueSettings(concurrency=5, timeout=60, retries=3, heartbeat=3),
                },
                sweep_seconds=1,
            ),
        )
        self.folder = folder / name
        self.env = child_env(self.settings, self.folder)
        self.env["WINGMAN_AI__OFFLINE__TOKEN_INTERVAL_MS"] = "10"
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://{self.address}:{WEB_PORT}"

    @property
    def inside(self) -> list[str]:
        """The prefix that runs a command in the node's namespace."""
        return ["ip", "netns", "exec", self.ns.netns(self.name)]

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{args[0]}.log").open("ab") as log:
            return subprocess.Popen(
                [*self.inside, sys.executable, "-m", "wingman", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_web(self) -> None:
        if self.web is None or self.web.poll() is not None:
            self.web = self._spawn("serve")

    def start_worker(self, queue: str) -> None:
        running = self.workers.get(queue)
        if running is None or running.poll() is not None:
            self.workers[queue] = self._spawn("worker", "--queue", queue)

    def stop_worker(self, queue: str) -> None:
        running = self.workers.get(queue)
        if running is not None and running.poll() is None:
            running.terminate()
            running.wait(45)

    def wait_ready(self) -> None:
        if not wait_until_ready(self.url, timeout=90):
            pytest.fail(f"{self.name} did not start: {(self.folder / 'serve.log').read_text()}")

    def kill(self) -> int:
        """SIGKILL to every process in the node's namespace; how many there were."""
        pids = self.ns.kill_all(self.name)
        for process in (self.web, *self.workers.values()):
            if process is not None:
                process.wait(10)
        return len(pids)

    def status(self) -> dict[str, Any]:
        """``wingmanctl status --json`` run on this node."""
        result = subprocess.run(
            [*self.inside, sys.executable, "-m", "wingman.ctl", "status", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    def shut_down(self) -> None:
        for process in (self.web, *self.workers.values()):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


@dataclass
class Topology:
    ns: Namespaces
    folder: Path
    postgres: PostgresCluster
    pgbouncer: PgBouncer
    redis: SentinelGroup
    nodes: dict[str, AppNode]
    haproxy: subprocess.Popen[bytes] | None = None

    @property
    def lb(self) -> str:
        return f"http://{self.ns.address('lb')}:{LB_PORT}"

    @property
    def api(self) -> str:
        return f"{self.lb}/api/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.ns.address('lb')}:{LB_PORT}/api/v1/ws"

    @property
    def settings(self) -> Settings:
        return self.nodes["app-a"].settings

    def node_of(self, pid: int) -> str:
        """The app node whose namespace runs process ``pid``."""
        return next(name for name in self.nodes if pid in self.ns.pids(name))

    def start_haproxy(self) -> None:
        config = self.folder / "haproxy.cfg"
        backends = [
            arg
            for node in self.nodes.values()
            for arg in ("--backend", f"{node.name}={node.address}:{WEB_PORT}")
        ]
        rendered = run_cli(
            "wingman.ctl", "lb", "render", *backends,
            "--bind", f"{self.ns.address('lb')}:{LB_PORT}",
            "--maxconn", "2000", "--stats-socket", str(self.folder / "haproxy.sock"),
            "-o", str(config), env=self.nodes["app-a"].env, timeout=60,
        )  # fmt: skip
        assert rendered.returncode == 0, rendered.stderr
        with (self.folder / "haproxy.log").open("ab") as log:
            self.haproxy = subprocess.Popen(
                ["ip", "netns", "exec", self.ns.netns("lb"), "haproxy", "-db", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def server_states(self) -> dict[str, str]:
        """Each node's state as HAProxy sees it (``show stat`` on its runtime API)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(3)
            sock.connect(str(self.folder / "haproxy.sock"))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = [line.split(",") for line in data.decode().splitlines()]
        return {row[1]: row[17] for row in rows if row[0] == "app_nodes" and row[1] in self.nodes}

    def balanced(self) -> bool:
        try:
            return set(self.server_states().values()) == {"UP"}
        except OSError:
            return False

    def ensure_up(self, ai_workers: tuple[str, ...] = ("app-a", "app-b")) -> None:
        """Both web servers in HAProxy's rotation, both ``default`` workers, node B's ``heavy``
        worker and the ``ai`` workers of the nodes named running."""
        for node in self.nodes.values():
            node.start_web()
            node.start_worker("default")
        for name in ai_workers:
            self.nodes[name].start_worker("ai")
        # One ``heavy`` worker in the cluster (exports, purges): status wants one per queue.
        self.nodes["app-b"].start_worker("heavy")
        for node in self.nodes.values():
            node.wait_ready()
        assert wait_for(self.balanced, 20, interval=0.2), self.server_states()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.shut_down()
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(10)
        self.pgbouncer.stop(10)
        self.redis.stop()
        self.postgres.stop(mode="immediate", timeout=20)


@pytest.fixture(scope="module")
def topology(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    ns = Namespaces(PARTS)
    root = service_folder("wingman-topology-")
    running: Topology | None = None
    try:
        ns.create()
        password = secrets.token_urlsafe(16)
        postgres = PostgresCluster(
            root / "postgres",
            5432,
            password,
            host=ns.address("data"),
            clients=ns.network,
            netns=ns.netns("data"),
        )
        postgres.init()
        postgres.write_config({"max_connections": 100, "shared_buffers": "64MB"})
        postgres.start()
        postgres.ensure_database("wingman")
        upgrade_to_head(postgres.url("wingman"))
        pgbouncer = PgBouncer(
            root / "pgbouncer",
            6432,
            5432,
            SUPERUSER,
            password,
            host=ns.address("data"),
            netns=ns.netns("data"),
        )
        pgbouncer.start()
        redis = SentinelGroup(
            root / "redis",
            password,
            master_name="wingman-queue",
            host=ns.address("redis"),
            netns=ns.netns("redis"),
        )
        redis.start()
        base = msgspec.structs.replace(
            settings,
            database=DatabaseSettings(
                url=pgbouncer.url("wingman"),
                pooler="pgbouncer",
                direct_url=postgres.url("wingman"),
                pool_size=10,
            ),
            redis=RedisSettings(queue_url=redis.url(0), cache_url=redis.url(1)),
        )
        folder = tmp_path_factory.mktemp("topology")
        nodes = {name: AppNode(name, ns, base, folder) for name in ("app-a", "app-b")}
        running = Topology(ns, folder, postgres, pgbouncer, redis, nodes)
        running.start_haproxy()
        running.ensure_up()
        yield running
    finally:
        try:
            if running is not None:
                running.stop()
        finally:
            ns.remove()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
async def engine(topology: Topology) -> AsyncIterator[AsyncEngine]:
    """PostgreSQL itself (not PgBouncer), for the test's own rows and checks."""
    engine = create_engine(
        msgspec.structs.replace(
            topology.settings.database, url=topology.postgres.url("wingman"), pooler="none"
        ),
        "wingman-topology-tests",
    )
    try:
        yield engine
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _traffic(topology: Topology, user: Caller) -> AsyncIterator[Traffic]:
    """One user's REST loops (reads and posts) through HAProxy, every answer kept with its time:
    when service came back, and that every refusal was a 503 with Retry-After."""
    traffic = Traffic()
    async with httpx.AsyncClient(base_url=topology.lb, headers=user.headers, timeout=15) as http:
        created = await http.post("/api/v1/sessions", json={})
        assert created.status_code == 201, created.text
        session_id = str(created.json()["id"])
        loops = [asyncio.create_task(run_loop(http, kind, session_id, traffic)) for kind in KINDS]
        try:
            yield traffic
        finally:
            traffic.running = False
            await asyncio.gather(*loops, return_exceptions=True)


def _profile(
    topology: Topology, engine: AsyncEngine
) -> contextlib.AbstractAsyncContextManager[ProfileLoad]:
    """The load profile in resilient mode through HAProxy at the CI user count."""
    return profile_load(topology.lb, engine, topology.settings, PROFILE_USERS)


async def _stored(engine: AsyncEngine, pairs: list[tuple[uuid.UUID, uuid.UUID]]) -> int:
    """How many of the accepted (user message, AI reply) pairs the database holds, both rows."""
    ids = [m for pair in pairs for m in pair]
    async with engine.connect() as conn:
        found = {
            row[0] for row in await conn.execute(select(Message.id).where(Message.id.in_(ids)))
        }
    return sum(1 for user_id, ai_id in pairs if user_id in found and ai_id in found)


# -- (a) ---------------------------------------------------------------------------------------


async def test_a_every_route_and_socket_through_haproxy(
    topology: Topology, engine: AsyncEngine
) -> None:
    # Only node B's worker runs: every reply is made on node B.
    topology.ensure_up(ai_workers=("app-b",))
    topology.nodes["app-a"].stop_worker("ai")

    # Every route of the OpenAPI document, through HAProxy, as a user of its own: answered by an
    # app node (never a 5xx, never the balancer's own answer).
    sweeper = await create_caller(engine, topology.settings)
    async with httpx.AsyncClient(base_url=topology.lb, timeout=15) as http:
        document = (await http.get("/api/docs/openapi.json")).json()
        routes = [
            (method.upper(), path)
            for path, item in document["paths"].items()
            for method in item
            if method in ("get", "post", "put", "patch", "delete")
        ]
        # Reads first, the account's own deletion last.
        routes.sort(key=lambda r: (r[0] != "GET", r == ("DELETE", "/api/v1/me"), r))
        answers: dict[tuple[str, str], int] = {}
        for method, path in routes:
            concrete = "/".join(
                str(uuid.uuid4()) if part.startswith("{") else part for part in path.split("/")
            )
            answer = await http.request(
                method,
                concrete,
                headers=sweeper.headers,
                json=None if method in ("GET", "DELETE") else {},
            )
            answers[(method, path)] = answer.status_code
    server_errors = {route: code for route, code in answers.items() if code >= 500}
    assert len(routes) > 20
    assert not server_errors, server_errors

    async with _profile(topology, engine) as load:
        on = {sim.index: topology.node_of(sim.server_pid) for sim in load.users}
        assert set(on.values()) == {"app-a", "app-b"}, "leastconn spreads sockets over both"
        await load.until_posted(2 * PROFILE_USERS, within_s=60)
    await assert_each_reply_once_in_database(engine, load)
    on_a = [sim for sim in load.users if on[sim.index] == "app-a"]
    replies_on_a = sum(sim.completed for sim in on_a)
    counts = load.counts()
    _record(
        "a_routes_and_sockets",
        {
            "routes_swept": len(routes),
            "route_statuses": sorted(set(answers.values())),
            "sockets_on_a": len(on_a),
            "replies_on_a_from_b_worker": replies_on_a,
            "profile": counts,
        },
    )
    assert all(sim.completed for sim in on_a), [sim.completed for sim in on_a]
    assert counts["reconnects"] == 0, counts
    assert counts["errors"] == {}, counts


# -- (b) ---------------------------------------------------------------------------------------


async def test_b_kill_9_of_an_app_node_resumes_every_stream(
    topology: Topology, engine: AsyncEngine
) -> None:
    topology.ensure_up()
    async with _profile(topology, engine) as load:
        on_a = [s for s in load.users if topology.node_of(s.server_pid) == "app-a"]
        assert on_a
        await load.until_posted(PROFILE_USERS)  # replies in flight on both nodes
        killed_at = time.monotonic()
        processes = await asyncio.to_thread(topology.nodes["app-a"].kill)
        await load.until_posted(load.posted + PROFILE_USERS, within_s=60)
        served_s = time.monotonic() - killed_at
    all_done_s = time.monotonic() - killed_at
    await assert_each_reply_once_in_database(engine, load)
    counts = load.counts()
    _record(
        "b_kill_app_node",
        {
            "processes_killed": processes,
            "sockets_on_a": len(on_a),
            "resumed_s": sorted(round(s, 3) for s in load.resilience.reconnect_s),
            "posted_again_s": round(served_s, 1),
            "all_done_after_kill_s": round(all_done_s, 1),
            "profile": counts,
        },
    )
    assert processes >= 4, "web (main + worker), the ai and default workers"
    # Every socket on the killed node came back through HAProxy and resumed.
    assert counts["reconnects"] >= len(on_a), counts
    assert counts["resumes"] == counts["reconnects"], counts
    assert counts["reconnect_max_s"] <= RECONNECT_BUDGET_S, counts
    assert_no_server_error(load)


# -- (c) ---------------------------------------------------------------------------------------


async def test_c_sentinel_failover_of_the_redis_master(
    topology: Topology, engine: AsyncEngine
) -> None:
    topology.ensure_up()
    await asyncio.to_thread(topology.redis.heal)
    user = await create_caller(engine, topology.settings, tier=UserTier.PREMIUM)
    async with _profile(topology, engine) as load, _traffic(topology, user) as traffic:
        await load.until_posted(PROFILE_USERS)
        old = await asyncio.to_thread(topology.redis.kill_master)
        killed_at = time.monotonic()
        new = await asyncio.to_thread(topology.redis.wait_for_new_master, old, 30)
        promoted_s = time.monotonic() - killed_at
        assert new is not None, "Sentinel promoted no replica"
        # Service is back once a post through HAProxy succeeds after the last failure.
        deadline = killed_at + REDIS_FAILOVER_BUDGET_S
        while True:
            after = [a for a in traffic.answers if a.at >= killed_at]
            back_from = max((a.at for a in after if a.status >= 300), default=killed_at)
            if traffic.succeeded("post", back_from) and time.monotonic() > back_from + 1:
                break
            assert time.monotonic() < deadline, "service did not come back"
            await asyncio.sleep(0.1)
        back_s = traffic.first_success("post", back_from) - killed_at
        await load.until_posted(load.posted + PROFILE_USERS, within_s=60)
    unavailable = [a for a in traffic.answers if a.status == 503]
    counts = load.counts()
    _record(
        "c_redis_failover",
        {
            "promoted_s": round(promoted_s, 2),
            "service_back_s": round(back_s, 2),
            "loop_requests": len(traffic.answers),
            "loop_answers_503": len(unavailable),
            "profile": counts,
        },
    )
    assert back_s <= REDIS_FAILOVER_BUDGET_S
    assert_refusals_were_unavailable(traffic)
    await assert_each_reply_once_in_database(engine, load)
    assert_no_server_error(load)


# -- (d) ---------------------------------------------------------------------------------------


async def test_d_pgbouncer_restart_loses_no_accepted_write(
    topology: Topology, engine: AsyncEngine
) -> None:
    topology.ensure_up()
    user = await create_caller(engine, topology.settings, tier=UserTier.PREMIUM)
    async with _profile(topology, engine) as load, _traffic(topology, user) as traffic:
        await load.until_posted(PROFILE_USERS)
        deadline = time.monotonic() + 20
        while True:
            if len(traffic.accepted) >= 5:
                break
            assert time.monotonic() < deadline, "no post accepted"
            await asyncio.sleep(0.1)
        stopped_at = time.monotonic()
        await asyncio.to_thread(topology.pgbouncer.stop)
        await asyncio.to_thread(topology.pgbouncer.start)
        restarted_at = time.monotonic()
        deadline = restarted_at + 30
        while True:
            if traffic.succeeded("post", restarted_at):
                break
            assert time.monotonic() < deadline, "no post succeeded after the restart"
            await asyncio.sleep(0.1)
        back_s = traffic.first_success("post", restarted_at) - stopped_at
        accepted_then = len(traffic.accepted)
        while True:
            if len(traffic.accepted) >= accepted_then + 5:
                break
            assert time.monotonic() < deadline, "posts stopped being accepted"
            await asyncio.sleep(0.1)
        await load.until_posted(load.posted + PROFILE_USERS, within_s=60)
    stored = await _stored(engine, traffic.accepted)
    await assert_each_reply_once_in_database(engine, load)
    assert_refusals_were_unavailable(traffic)
    counts = load.counts()
    _record(
        "d_pgbouncer_restart",
        {
            "restart_s": round(restarted_at - stopped_at, 2),
            "writes_back_s": round(back_s, 2),
            "accepted_writes": len(traffic.accepted),
            "stored_writes": stored,
            "loop_requests": len(traffic.answers),
            "loop_statuses": sorted({a.status for a in traffic.answers}),
            "profile": counts,
        },
    )
    assert stored == len(traffic.accepted)
    assert_no_server_error(load)


# -- (e) ---------------------------------------------------------------------------------------


def _cluster_rows(report: dict[str, Any]) -> dict[str, str]:
    return {r["name"]: r["state"] for r in report["rows"] if r["group"] == "cluster"}


async def test_e_status_follows_the_cluster(topology: Topology, engine: AsyncEngine) -> None:
    topology.ensure_up()
    node_b = topology.nodes["app-b"]
    async with _profile(topology, engine) as load:
        on_a = [s for s in load.users if topology.node_of(s.server_pid) == "app-a"]
        before = await asyncio.to_thread(node_b.status)
        assert _cluster_rows(before) == {"app-a": "ok", "app-b": "ok"}, before["rows"]
        assert before["overall"] == "healthy", [r for r in before["rows"] if r["state"] != "ok"]

        killed_at = time.monotonic()
        await asyncio.to_thread(topology.nodes["app-a"].kill)
        deadline = time.monotonic() + 40
        while True:
            report = await asyncio.to_thread(node_b.status)
            if _cluster_rows(report).get("app-a") == "fail":
                break
            assert time.monotonic() < deadline, report["rows"]
            await asyncio.sleep(0.2)
        down_s = time.monotonic() - killed_at
        degraded = report["overall"]

        returned_at = time.monotonic()
        await asyncio.to_thread(topology.ensure_up)
        while True:
            after = await asyncio.to_thread(node_b.status)
            if _cluster_rows(after) == {"app-a": "ok", "app-b": "ok"}:
                break
            assert time.monotonic() < returned_at + 90, after["rows"]
            await asyncio.sleep(0.2)
        up_s = time.monotonic() - returned_at
    await assert_each_reply_once_in_database(engine, load)
    counts = load.counts()
    not_ok = {f"{r['group']}/{r['name']}": r["value"] for r in after["rows"] if r["state"] != "ok"}
    _record(
        "e_status",
        {
            "before": before["overall"],
            "after_kill": degraded,
            "node_down_shown_s": round(down_s, 1),
            "after_return": after["overall"],
            "node_up_shown_s": round(up_s, 1),
            "rows_not_ok_after_return": not_ok,
            "profile": counts,
        },
    )
    # A member down is not an outage of the API: degraded, not down.
    assert degraded == "degraded"
    assert after["overall"] == "healthy", not_ok
    assert counts["reconnects"] >= len(on_a), counts
    assert_no_server_error(load)
