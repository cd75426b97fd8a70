"""The WebSocket against real processes: ``wingmanctl serve`` with two Granian workers, events
published by a separate Python process through the event bus, and a real SAQ ``ai`` worker.

Checks what only real processes show: fan-out through Redis to sockets on both workers, a
non-reading client dropped while another keeps up, and SIGTERM closing every socket with 1001
so that clients reconnect to a new server and resume without a gap.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.accounts import Caller, create_caller
from tests.support.cli import run_cli
from tests.support.services import child_env, wait_until_ready
from wingman.config import RealtimeSettings, ServerSettings, Settings
from wingman.db.models import UserRole
from wingman.devstack.processes import free_port
from wingman.domain.realtime.protocol import CloseCode
from wingman.server.database import create_engine

pytestmark = pytest.mark.e2e

# Publishes COUNT events of SIZE characters to USER from its own process, like a SAQ worker;
# prints the last event id.
PUBLISHER = """
import asyncio, sys, uuid
from wingman.config import load_settings
from wingman.domain.realtime.events import event_bus
from wingman.server.redis import RedisClients

async def main(user, count, size):
    settings = load_settings()
    redis = RedisClients.from_settings(settings.redis, process="test-publisher")
    bus = event_bus(settings, redis)
    last = 0
    for n in range(count):
        last = await bus.publish(uuid.UUID(user), "message.delta", {"n": n, "text": "x" * size})
        # About 400 events/s: a reader in the test process keeps up even on a busy 2-core host
        # (at 2,000/s it fell 256 frames behind there and was closed as too slow itself).
        if n % 20 == 19:
            await asyncio.sleep(0.05)
    await redis.close()
    print(last)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


class WebServer:
    """``wingmanctl serve`` with ``workers`` Granian workers on a fixed port, restartable."""

    def __init__(
        self,
        settings: Settings,
        folder: Path,
        realtime: RealtimeSettings | None = None,
        workers: int = 2,
    ) -> None:
        self.port = free_port()
        self.settings = msgspec.structs.replace(
            settings,
            server=ServerSettings(port=self.port, graceful_timeout=10),
            # A 10 s close timeout: the slow-reader test's sleeper starts reading only once the
            # reader has all its frames, which took over 2 s (the default) on a busy 2-core host;
            # after the timeout the server drops the connection and the 4008 is never read.
            realtime=realtime
            or RealtimeSettings(max_sockets_per_user=32, close_timeout_seconds=10.0),
        )
        self.folder = folder
        self.env = child_env(self.settings, folder)
        self.env["WINGMAN_SERVER__WORKERS"] = str(workers)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    def start(self) -> None:
        # The server's log, kept for when a test fails.
        with (self.folder / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wingman", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_until_ready(f"http://127.0.0.1:{self.port}", timeout=90):
            self.shut_down()
            pytest.fail("the server did not start")

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def shut_down(self) -> None:
        """Stop the server if it runs: SIGTERM (Granian stops its workers), SIGKILL as a last
        resort (which would orphan the workers, so only after the grace period)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def publish(self, user: Caller, count: int, size: int = 10) -> int:
        result = subprocess.run(
            [sys.executable, "-c", PUBLISHER, str(user.id), str(count), str(size)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return int(result.stdout.strip())


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    web = WebServer(settings, tmp_path_factory.mktemp("realtime-e2e"))
    web.start()
    try:
        yield web
    finally:
        web.shut_down()


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database, "wingman-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


async def open_socket(server: WebServer, user: Caller, **options: Any) -> ClientConnection:
    token = user.headers["Authorization"].removeprefix("Bearer ")
    return await connect(
        server.url,
        subprotocols=["bearer", token],  # type: ignore[list-item]
        proxy=None,
        compression=None,
        **options,
    )


def small_receive_buffer(port: int) -> socket.socket:
    """A connected TCP socket whose receive window stays small (no autotuning to megabytes), so
    a client that stops reading pushes back on the server quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def receive(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
        if frame["type"] != "ping":
            return frame


async def start(ws: ClientConnection, last_event_id: int | None = None) -> dict[str, Any]:
    hello = await receive(ws)
    assert hello["type"] == "hello"
    await ws.send(json.dumps({"type": "resume", "last_event_id": last_event_id}))
    assert (await receive(ws))["type"] in ("resumed", "resync_required")
    return hello


async def close_code(ws: ClientConnection, within: float = 20.0) -> int | None:
    async with asyncio.timeout(within):
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
    return ws.close_code


async def sockets_on_both_workers(server: WebServer, user: Caller) -> list[ClientConnection]:
    """A few started sockets of ``user`` on each of the two Granian workers."""
    sockets: list[ClientConnection] = []
    pids: list[int] = []
    # The second worker may still be starting: keep connecting (a few sockets per worker).
    for _ in range(60):
        ws = await open_socket(server, user)
        pid = (await start(ws))["data"]["pid"]
        if sum(1 for p in pids if p == pid) >= 3:
            await ws.close()
            await asyncio.sleep(0.2)
        else:
            sockets.append(ws)
            pids.append(pid)
        if len(set(pids)) == 2 and len(sockets) >= 4:
            return sockets
    for ws in sockets:
        await ws.close()
    pytest.fail("every socket landed on one worker")


async def test_events_from_another_process_reach_sockets_on_both_workers(
    server: WebServer, engine: AsyncEngine, settings: Settings
) -> None:
    user = await create_caller(engine, settings)
    sockets = await sockets_on_both_workers(server, user)
    try:
        last = server.publish(user, 3)
        for ws in sockets:
            frames = [await receive(ws) for _ in range(3)]
            assert [f["event_id"] for f in frames] == [last - 2, last - 1, last]
            assert [f["data"]["n"] for f in frames] == [0, 1, 2]
    finally:
        for ws in sockets:
            await ws.close()


async def test_a_client_that_never_reads_is_dropped_while_a_reader_keeps_up(
    server: WebServer, engine: AsyncEngine, settings: Settings
) -> None:
    user = await create_caller(engine, settings)
    reader = await open_socket(server, user)
    sleeper = await open_socket(server, user, max_queue=1, sock=small_receive_buffer(server.port))
    try:
        await start(reader)
        await start(sleeper)
        # 7 MB: more than the server's socket buffer (4 MB at most here) and the queue (256
        # frames, 1 MB) together. The queue is the reader's slack: on a busy 2-core host it was
        # closed as too slow itself with 64 frames of it.
        count = 1700
        publishing = asyncio.create_task(asyncio.to_thread(server.publish, user, count, 4000))
        ids = [(await receive(reader))["event_id"] for _ in range(count)]
        assert ids == list(range(ids[0], ids[0] + count))
        await publishing
        assert await close_code(sleeper) == 4008
    finally:
        await reader.close()
        await sleeper.close()


async def test_sigterm_sends_going_away_and_clients_resume_on_a_new_server_without_gap(
    server: WebServer, engine: AsyncEngine, settings: Settings
) -> None:
    user = await create_caller(engine, settings)
    sockets = [await open_socket(server, user) for _ in range(6)]
    for ws in sockets:
        await start(ws)
    first = server.publish(user, 2)
    for ws in sockets:
        assert [(await receive(ws))["event_id"] for _ in range(2)] == [first - 1, first]

    assert server.stop() == 0
    assert [await close_code(ws, within=10) for ws in sockets] == [1001] * 6
    # Published while no server runs: kept in the history.
    missed = server.publish(user, 3)
    server.start()
    back = [await open_socket(server, user) for _ in range(2)]
    try:
        for ws in back:
            hello = await receive(ws)
            assert hello["data"]["event_id"] == missed
            await ws.send(json.dumps({"type": "resume", "last_event_id": first}))
            frames = [await receive(ws) for _ in range(4)]
            assert [f.get("event_id") for f in frames[:3]] == [first + 1, first + 2, first + 3]
            assert frames[3] == {"type": "resumed", "data": {"event_id": missed, "replayed": 3}}
    finally:
        for ws in back:
            await ws.close()


@pytest.fixture
def ai_worker(server: WebServer) -> Iterator[subprocess.Popen[bytes]]:
    """A SAQ ``ai`` worker with the server's settings (a fast offline provider)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "wingman", "worker", "--queue", "ai"],
        env={**server.env, "WINGMAN_AI__OFFLINE__TOKEN_INTERVAL_MS": "5"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


@pytest.mark.usefixtures("ai_worker")
async def test_a_reply_from_a_real_ai_worker_streams_to_sockets_on_both_workers(
    server: WebServer, engine: AsyncEngine, settings: Settings
) -> None:
    """The whole path: REST post → SAQ ``ai`` worker process → Redis → both Granian workers."""
    user = await create_caller(engine, settings)
    sockets = await sockets_on_both_workers(server, user)
    base = f"http://127.0.0.1:{server.port}/api/v1"
    try:
        async with httpx.AsyncClient(base_url=base, headers=user.headers, timeout=30) as http:
            chat = (await http.post("/sessions", json={})).json()
            posted = await http.post(
                f"/sessions/{chat['id']}/messages", json={"content": "Any plans for Sunday?"}
            )
            assert posted.status_code == 202, posted.text
            ai_id = posted.json()["ai_message"]["id"]
            for ws in sockets:
                created: list[str] = []
                text = ""
                while True:
                    frame = await receive(ws, within=60)
                    data = frame["data"]
                    if frame["type"] == "message.created":
                        created.append(data["sender"])
                    elif frame["type"] == "message.delta" and data["message_id"] == ai_id:
                        text = text[: data["offset"]] + data["text"]
                    elif frame["type"] == "message.completed" and data["id"] == ai_id:
                        completed = data
                        break
                assert created == ["user", "ai"]
                assert completed["processing_status"] == "done"
                assert text == completed["content"] != ""
            page = (await http.get(f"/sessions/{chat['id']}/messages")).json()
            stored = next(m for m in page["items"] if m["id"] == ai_id)
            assert stored["content"] == text
    finally:
        for ws in sockets:
            await ws.close()


async def closed_within(ws: ClientConnection, seconds: float) -> int | None:
    """The close code the server sent within ``seconds`` (None: not closed by then)."""
    try:
        return await close_code(ws, within=seconds)
    except TimeoutError:
        return None


async def test_disabling_an_account_closes_its_sockets_on_every_worker_at_once(
    server: WebServer, engine: AsyncEngine, settings: Settings
) -> None:
    user = await create_caller(engine, settings)
    admin = await create_caller(engine, settings, role=UserRole.ADMIN)
    sockets = await sockets_on_both_workers(server, user)
    base = f"http://127.0.0.1:{server.port}/api/v1"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            # Both workers have the account cached as active.
            for _ in range(6):
                assert (await http.get("/me", headers=user.headers)).status_code == 200
            changed = await http.patch(
                f"/admin/users/{user.id}", json={"status": "disabled"}, headers=admin.headers
            )
            assert changed.status_code == 200, changed.text
            codes = await asyncio.gather(*(closed_within(ws, 1.0) for ws in sockets))
            assert codes == [CloseCode.ACCOUNT_DISABLED] * len(sockets)
            # REST refuses it on every worker from the next request on.
            for _ in range(6):
                answer = await http.get("/me", headers=user.headers)
                assert answer.status_code == 401
                assert answer.json()["type"].endswith("account-disabled")
            # And a new socket is refused.
            ws = await open_socket(server, user)
            assert await close_code(ws, within=10) == CloseCode.ACCOUNT_DISABLED
    finally:
        for ws in sockets:
            await ws.close()


async def test_a_tier_change_from_the_command_line_reaches_open_sockets_at_once(
    server: WebServer, engine: AsyncEngine, settings: Settings
) -> None:
    user = await create_caller(engine, settings)
    sockets = await sockets_on_both_workers(server, user)
    try:
        changed = await asyncio.to_thread(
            run_cli, "wingman.ctl", "users", "set-tier", str(user.id), "premium", env=server.env
        )
        assert changed.returncode == 0, changed.stderr
        for ws in sockets:
            frame = await receive(ws, within=1.0)
            assert frame == {"type": "account_updated", "data": {"tier": "premium", "role": "user"}}
            # The socket stays open.
            await ws.send(json.dumps({"type": "ping"}))
            assert (await receive(ws))["type"] == "pong"
        disabled = await asyncio.to_thread(
            run_cli, "wingman.ctl", "users", "disable", str(user.id), env=server.env
        )
        assert disabled.returncode == 0, disabled.stderr
        codes = await asyncio.gather(*(closed_within(ws, 1.0) for ws in sockets))
        assert codes == [CloseCode.ACCOUNT_DISABLED] * len(sockets)
    finally:
        for ws in sockets:
            await ws.close()
