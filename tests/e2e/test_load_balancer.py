"""Two app nodes behind a real HAProxy, on loopback, sharing one PostgreSQL and Redis.

Each node is what an app node runs: ``wingmanctl serve`` (node.role = app) and a SAQ ``ai`` worker,
each in its own process group (a whole node dies with one ``killpg``). The balancer's config is
the one ``wingmanctl lb render`` writes. Checked:

- REST and the WebSocket through the balancer, both nodes serving, both listed by
  ``wingmanctl status``; a user's socket on node A gets a reply made by node B's worker;
- kill -9 of every process of node A under a small chat load: sockets reconnect through the
  balancer within 5 s and resume, every reply ends ``done`` exactly once (in the database);
- SIGTERM of node B's web process under load: /health/ready turns 503 while B still serves,
  the balancer moves traffic to A, sockets close with 1001 and reconnect, no request is lost
  and no answer is a 5xx other than 503.

Recovery figures are printed (``-s`` shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.accounts import Caller, create_caller
from tests.support.cli import run_cli
from tests.support.services import child_env, wait_until_ready
from wingman.config import (
    NodeSettings,
    QueueSettings,
    RealtimeSettings,
    ServerSettings,
    Settings,
    WorkerSettings,
)
from wingman.db.models import Message, MessageSender, ProcessingStatus, UserTier
from wingman.devstack.processes import free_port, wait_for
from wingman.domain.realtime.protocol import CloseCode
from wingman.server.database import create_engine

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]
RECONNECT_BUDGET_S = 5.0
DRAIN_SECONDS = 3.0


def _ai_queue() -> dict[str, QueueSettings]:
    # A short job heartbeat: a killed worker's replies are orphans (and retried) within seconds.
    return {"ai": QueueSettings(concurrency=20, timeout=60, retries=3, heartbeat=3)}


class Node:
    """One app node: its web server and its ``ai`` worker, each a process group."""

    def __init__(self, name: str, settings: Settings, folder: Path) -> None:
        self.name = name
        self.port = free_port()
        self.settings = msgspec.structs.replace(
            settings,
            server=ServerSettings(
                port=self.port, workers=1, graceful_timeout=10, trusted_proxies=["127.0.0.1"]
            ),
            node=NodeSettings(role="app", name=name, drain_seconds=DRAIN_SECONDS),
            realtime=RealtimeSettings(max_sockets_per_user=16),
            worker=WorkerSettings(queues=_ai_queue(), sweep_seconds=1),
        )
        self.folder = folder / name
        self.env = child_env(self.settings, self.folder)
        self.env["WINGMAN_AI__OFFLINE__TOKEN_INTERVAL_MS"] = "10"
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{args[0]}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "wingman", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_web(self) -> None:
        if self.web is None or self.web.poll() is not None:
            self.web = self._spawn("serve")

    def start_worker(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            self.worker = self._spawn("worker", "--queue", "ai")

    def wait_ready(self) -> None:
        if not wait_until_ready(self.url, timeout=90):
            pytest.fail(f"{self.name} did not start: {(self.folder / 'serve.log').read_text()}")

    def web_pids(self) -> set[int]:
        """The web server's processes: Granian's main and its workers."""
        assert self.web is not None
        return {self.web.pid, *_children(self.web.pid)}

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            self.worker.wait(45)

    def kill(self) -> None:
        """SIGKILL to every process of the node."""
        for process in (self.web, self.worker):
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def shut_down(self) -> None:
        for process in (self.web, self.worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(45)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


@dataclass
class Cluster:
    nodes: dict[str, Node]
    lb_port: int
    haproxy: subprocess.Popen[bytes]
    folder: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}/api/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.lb_port}/api/v1/ws"

    def node_of(self, pid: int) -> str:
        return next(name for name, node in self.nodes.items() if pid in node.web_pids())

    def server_states(self) -> dict[str, str]:
        """Each node's state as the balancer sees it (``show stat`` on its runtime API)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(3)
            sock.connect(str(self.folder / "haproxy.sock"))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = [
            line.split(",") for line in data.decode().splitlines() if line.startswith("app_nodes,")
        ]
        return {row[1]: row[17] for row in rows if row[1] in self.nodes}

    def balanced(self) -> bool:
        """True once the balancer counts every node up."""
        try:
            return set(self.server_states().values()) == {"UP"}
        except OSError:
            return False

    def ensure_up(self) -> None:
        """Both web servers ready and in the balancer's rotation (after an earlier test)."""
        for node in self.nodes.values():
            node.start_web()
        for node in self.nodes.values():
            node.wait_ready()
        # Two checks a second apart put a node back.
        assert wait_for(self.balanced, 15, interval=0.2), self.server_states()


def _haproxy_config(nodes: dict[str, Node], lb_port: int, folder: Path) -> Path:
    """The config as the operator gets it: ``wingmanctl lb render`` (checked by haproxy -c)."""
    config = folder / "haproxy.cfg"
    backends = [
        arg for n in nodes.values() for arg in ("--backend", f"{n.name}=127.0.0.1:{n.port}")
    ]
    env = next(iter(nodes.values())).env
    result = run_cli(
        "wingman.ctl", "lb", "render", *backends, "--bind", f"127.0.0.1:{lb_port}",
        "--maxconn", "2000", "--stats-socket", str(folder / "haproxy.sock"),
        "-o", str(config), env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return config


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("lb-e2e")
    nodes = {name: Node(name, settings, folder) for name in ("node-a", "node-b")}
    lb_port = free_port()
    config = _haproxy_config(nodes, lb_port, folder)
    for node in nodes.values():
        node.start_web()
    with (folder / "haproxy.log").open("ab") as log:
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    running = Cluster(nodes, lb_port, haproxy, folder)
    try:
        running.ensure_up()
        yield running
    finally:
        for node in nodes.values():
            node.shut_down()
        haproxy.terminate()
        haproxy.wait(10)


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database, "wingman-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


# -- a chat client that keeps its socket through the balancer ---------------------------------


async def _receive(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
        if frame["type"] != "ping":
            return frame


@dataclass
class ChatClient:
    """One user: a socket that reconnects and resumes, and messages posted with retries."""

    cluster: Cluster
    user: Caller
    ws: ClientConnection | None = None
    pid: int = 0
    last_event_id: int | None = None
    completed: dict[str, int] = field(default_factory=dict)
    close_codes: list[int | None] = field(default_factory=list)
    reconnect_s: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    posted: list[tuple[str, str]] = field(default_factory=list)

    async def connect(self) -> None:
        """Connect through the balancer (retrying while it has no node for us) and resume."""
        token = self.user.headers["Authorization"].removeprefix("Bearer ")
        deadline = time.monotonic() + 20
        while True:
            try:
                ws = await connect(
                    self.cluster.ws_url,
                    subprotocols=["bearer", token],  # type: ignore[list-item]
                    proxy=None,
                    open_timeout=5,
                )
                hello = await _receive(ws)
                await ws.send(json.dumps({"type": "resume", "last_event_id": self.last_event_id}))
                self.ws, self.pid = ws, hello["data"]["pid"]
                return
            except (OSError, InvalidStatus, ConnectionClosed, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def read(self, stop: asyncio.Event) -> None:
        """Read events until ``stop``; on a close, reconnect and resume, timing it."""
        while not stop.is_set():
            assert self.ws is not None
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), 0.5))
            except TimeoutError:
                continue
            except ConnectionClosed:
                closed_at = time.monotonic()
                self.close_codes.append(self.ws.close_code)
                await self.connect()
                self.reconnect_s.append(time.monotonic() - closed_at)
                continue
            if "event_id" in frame:
                self.last_event_id = frame["event_id"]
            if frame["type"] == "message.completed":
                ai_id = frame["data"]["id"]
                self.completed[ai_id] = self.completed.get(ai_id, 0) + 1

    async def post(self, http: httpx.AsyncClient, session_id: str) -> None:
        """One message, retried with its idempotency key until the API takes it."""
        key = uuid.uuid4().hex
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                answer = await http.post(
                    f"/sessions/{session_id}/messages",
                    json={"content": "Dinner on Friday?", "idempotency_key": key},
                    headers=self.user.headers,
                )
            except httpx.TransportError:
                self.statuses.append(0)
                await asyncio.sleep(0.2)
                continue
            self.statuses.append(answer.status_code)
            if answer.status_code in (200, 201, 202):
                self.posted.append((key, answer.json()["ai_message"]["id"]))
                return
            await asyncio.sleep(0.2)
        self.lost.append(key)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def _clients(
    cluster: Cluster, engine: AsyncEngine, settings: Settings, count: int
) -> list[ChatClient]:
    clients = []
    for _ in range(count):
        user = await create_caller(engine, settings, tier=UserTier.PREMIUM)
        client = ChatClient(cluster, user)
        await client.connect()
        clients.append(client)
    return clients


async def _session(http: httpx.AsyncClient, client: ChatClient) -> str:
    answer = await http.post("/sessions", json={}, headers=client.user.headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def _wait_completed(clients: list[ChatClient], seconds: float) -> float:
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        if all(ai_id in c.completed for c in clients for _, ai_id in c.posted):
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    missing = [ai_id for c in clients for _, ai_id in c.posted if ai_id not in c.completed]
    raise AssertionError(f"{len(missing)} replies never completed on their sockets: {missing}")


async def _replies_in_database(engine: AsyncEngine, clients: list[ChatClient]) -> None:
    """Every message posted exactly once, and exactly one reply to it, done."""
    keys = [key for c in clients for key, _ in c.posted]
    async with engine.connect() as conn:
        users = (
            await conn.execute(
                select(Message.id, Message.idempotency_key).where(
                    Message.idempotency_key.in_(keys), Message.sender == MessageSender.USER
                )
            )
        ).all()
        assert sorted(k for _, k in users) == sorted(keys)
        replies = (
            await conn.execute(
                select(
                    Message.reply_to_id, Message.processing_status, func.length(Message.content)
                ).where(Message.reply_to_id.in_([uid for uid, _ in users]))
            )
        ).all()
    assert len(replies) == len(users)
    assert {r[0] for r in replies} == {uid for uid, _ in users}
    assert all(r[1] == ProcessingStatus.DONE and r[2] > 0 for r in replies), replies


# -- the tests ---------------------------------------------------------------------------------


async def test_rest_and_sockets_through_the_balancer_reach_both_nodes(
    cluster: Cluster, engine: AsyncEngine, settings: Settings
) -> None:
    cluster.ensure_up()
    # Only node B's worker runs: a reply to a socket on node A is made on node B.
    cluster.nodes["node-a"].stop_worker()
    cluster.nodes["node-b"].start_worker()
    clients = await _clients(cluster, engine, settings, 4)
    try:
        on = {cluster.node_of(c.pid) for c in clients}
        assert on == {"node-a", "node-b"}, "leastconn spreads sockets over both nodes"
        on_a = next(c for c in clients if cluster.node_of(c.pid) == "node-a")
        stop = asyncio.Event()
        reader = asyncio.create_task(on_a.read(stop))
        async with httpx.AsyncClient(base_url=cluster.api, timeout=30) as http:
            for _ in range(4):
                tones = await http.get("/tones", headers=on_a.user.headers)
                assert tones.status_code == 200
            await on_a.post(http, await _session(http, on_a))
            await _wait_completed([on_a], 30)
        stop.set()
        await reader
    finally:
        for client in clients:
            await client.close()

    # Every node reports itself; status on either lists both.
    listed = await asyncio.to_thread(
        run_cli, "wingman.ctl", "status", "--json", env=cluster.nodes["node-b"].env
    )
    rows = json.loads(listed.stdout)["rows"]
    members = {r["name"]: r for r in rows if r["group"] == "cluster"}
    assert set(members) == {"node-a", "node-b"}
    assert all(m["state"] == "ok" and m["figures"]["role"] == "app" for m in members.values())
    assert members["node-a"]["figures"]["address"] == f"127.0.0.1:{cluster.nodes['node-a'].port}"


async def test_kill_9_of_a_node_under_load_loses_no_reply(
    cluster: Cluster, engine: AsyncEngine, settings: Settings
) -> None:
    cluster.ensure_up()
    for node in cluster.nodes.values():
        node.start_worker()
    clients = await _clients(cluster, engine, settings, 6)
    assert {cluster.node_of(c.pid) for c in clients} == {"node-a", "node-b"}
    on_a = [c for c in clients if cluster.node_of(c.pid) == "node-a"]
    stop = asyncio.Event()
    readers = [asyncio.create_task(c.read(stop)) for c in clients]
    try:
        async with httpx.AsyncClient(base_url=cluster.api, timeout=15) as http:
            sessions = [await _session(http, c) for c in clients]

            async def chat(client: ChatClient, session_id: str, rounds: int) -> None:
                for _ in range(rounds):
                    await client.post(http, session_id)
                    await asyncio.sleep(0.3)

            load = [
                asyncio.create_task(chat(c, s, 8)) for c, s in zip(clients, sessions, strict=True)
            ]
            await asyncio.sleep(0.4)  # mid-load, replies in flight
            killed_at = time.monotonic()
            await asyncio.to_thread(cluster.nodes["node-a"].kill)
            await asyncio.gather(*load)
            rest_done = time.monotonic() - killed_at
            settle = await _wait_completed(clients, 45)
    finally:
        stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
        for client in clients:
            await client.close()

    reconnects = [s for c in on_a for s in c.reconnect_s]
    print(
        f"\nkill -9 node-a: {len(on_a)} sockets reconnected and resumed through HAProxy in "
        f"max {max(reconnects):.2f} s (each: {', '.join(f'{s:.2f}' for s in reconnects)}); "
        f"REST load finished {rest_done:.1f} s after the kill; every reply done "
        f"{rest_done + settle:.1f} s after it"
    )
    assert all(len(c.reconnect_s) >= 1 for c in on_a)
    assert max(reconnects) <= RECONNECT_BUDGET_S
    assert not [k for c in clients for k in c.lost]
    # Each reply's completion reached its user's socket (live or replayed on resume) ...
    assert all(c.completed.get(ai_id, 0) >= 1 for c in clients for _, ai_id in c.posted)
    # ... and the database holds exactly one reply per message, done.
    await _replies_in_database(engine, clients)


async def test_sigterm_drains_a_node_without_losing_a_request(
    cluster: Cluster, engine: AsyncEngine, settings: Settings
) -> None:
    cluster.ensure_up()
    node_b = cluster.nodes["node-b"]
    clients = await _clients(cluster, engine, settings, 4)
    on_b = [c for c in clients if cluster.node_of(c.pid) == "node-b"]
    assert on_b
    stop = asyncio.Event()
    readers = [asyncio.create_task(c.read(stop)) for c in clients]
    statuses: list[int] = []
    direct: list[int] = []

    async def load(http: httpx.AsyncClient, user: Caller) -> None:
        while not stop.is_set():
            try:
                statuses.append((await http.get("/tones", headers=user.headers)).status_code)
            except httpx.TransportError:
                statuses.append(0)
            await asyncio.sleep(0.02)

    async def watch_b() -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while not stop.is_set():
                try:
                    direct.append((await http.get(f"{node_b.url}/health/ready")).status_code)
                except httpx.TransportError:
                    return
                await asyncio.sleep(0.1)

    try:
        async with httpx.AsyncClient(base_url=cluster.api, timeout=15) as http:
            loaders = [asyncio.create_task(load(http, c.user)) for c in clients]
            watcher = asyncio.create_task(watch_b())
            await asyncio.sleep(0.3)
            assert node_b.web is not None
            stopped_at = time.monotonic()
            node_b.web.send_signal(signal.SIGTERM)
            exit_code = await asyncio.to_thread(node_b.web.wait, 30)
            stop_s = time.monotonic() - stopped_at
            # Clients of node B back on node A.
            assert await asyncio.to_thread(wait_for, lambda: all(c.reconnect_s for c in on_b), 10)
            stop.set()
            await asyncio.gather(*loaders, watcher)
    finally:
        stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
        for client in clients:
            await client.close()

    reconnects = [s for c in on_b for s in c.reconnect_s]
    print(
        f"\nSIGTERM node-b: stopped in {stop_s:.1f} s; {len(statuses)} requests through HAProxy "
        f"meanwhile, answers {sorted(set(statuses))}; {len(on_b)} sockets closed with "
        f"{sorted({code for c in on_b for code in c.close_codes})} and resumed on node-a in max "
        f"{max(reconnects):.2f} s"
    )
    assert exit_code == 0
    assert 503 in direct, "node B's /health/ready turns 503 before it stops"
    assert 0 not in statuses, "no request lost"
    assert set(statuses) <= {200, 503}
    assert [code for c in on_b for code in c.close_codes] == [CloseCode.GOING_AWAY] * len(on_b)
    assert max(reconnects) <= RECONNECT_BUDGET_S
    assert all(cluster.node_of(c.pid) == "node-a" for c in on_b)
