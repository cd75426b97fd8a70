"""What does an idle WebSocket cost, and how fast does an event reach it? (benchmark, not a test)

Starts a private PostgreSQL and Redis and a real `wingmanctl serve` (2 Granian workers by default),
creates one user per socket and opens ``--sockets`` WebSockets (default 5,000) from this process,
each authenticated by subprotocol and started with ``resume``. Measures:

- memory per idle connection: the summed RSS of the server's processes (Granian main and
  workers) before the sockets and with all of them open and idle, divided by the count;
- fan-out latency, publish → receipt: a separate publisher process publishes through the event
  bus, each event carrying its publish timestamp (same host, same clock), and every client notes
  when the frame arrives. Two shapes: a steady stream to random users (``--rate`` events/s for
  ``--seconds``), and a burst with one event for every user at once.

Client, server, Redis and PostgreSQL share this machine's cores, so the latencies include the
client's own scheduling. Writes bench/results/<date>-ws-fanout.{json,md}.

    .venv/bin/python scripts/bench_ws.py [--sockets N] [--workers N] [--rate N] [--seconds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import psycopg
import uvloop
from benchkit import private_services
from uuid_utils.compat import uuid7
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wingman.config import RealtimeSettings, ServerSettings, Settings
from wingman.devstack.processes import free_port, port_open, wait_for
from wingman.server.auth import issue_access_token

REPO = Path(__file__).resolve().parents[1]

# Publishes events (from its own process, like a SAQ worker) and stamps each with its publish
# time. Reads "user_id count" lines from stdin: one line per batch; "burst" lines publish the
# batch concurrently, "steady" lines pace them over the given seconds.
PUBLISHER = """
import asyncio, sys, time, uuid
from wingman.config import load_settings
from wingman.domain.realtime.events import event_bus
from wingman.server.redis import RedisClients

async def main():
    settings = load_settings()
    redis = RedisClients.from_settings(settings.redis, process="bench-publisher")
    bus = event_bus(settings, redis)
    for line in sys.stdin:
        shape, seconds, *users = line.split()
        ids = [uuid.UUID(u) for u in users]
        if shape == "burst":
            await asyncio.gather(*(
                bus.publish(u, "message.delta", {"sent_at": time.time()}) for u in ids
            ))
        else:
            gap = float(seconds) / max(len(ids), 1)
            start = time.perf_counter()
            for n, u in enumerate(ids):
                delay = start + n * gap - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await bus.publish(u, "message.delta", {"sent_at": time.time()})
        print("done", flush=True)
    await redis.close()

asyncio.run(main())
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def raise_file_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            pids.extend(process_tree(int(child)))
    return pids


def server_rss(pid: int) -> int:
    return sum(rss_bytes(p) for p in process_tree(pid))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(latencies_ms: list[float]) -> dict[str, float]:
    return {
        "count": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 50), 2),
        "p99_ms": round(percentile(latencies_ms, 99), 2),
        "max_ms": round(max(latencies_ms), 2),
        "mean_ms": round(statistics.fmean(latencies_ms), 2),
    }


class Clients:
    """The benchmark's sockets, each read by its own task that records arrival latencies."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sockets: list[ClientConnection] = []
        self.latencies: list[float] = []
        self.closed: list[int | None] = []
        self._readers: list[asyncio.Task[None]] = []
        self._expected = 0
        self._arrived = asyncio.Event()

    async def open(self, tokens: list[str], concurrency: int) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(token: str) -> None:
            async with gate:
                ws = await connect(
                    self.url,
                    subprotocols=["bearer", token],  # type: ignore[list-item]
                    proxy=None,
                    compression=None,
                    ping_interval=None,
                    open_timeout=60,
                )
                hello = json.loads(await ws.recv())
                await ws.send(
                    json.dumps({"type": "resume", "last_event_id": hello["data"]["event_id"]})
                )
                await ws.recv()  # resumed
                self.sockets.append(ws)
                self._readers.append(asyncio.create_task(self._read(ws)))

        await asyncio.gather(*(one(t) for t in tokens))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                if frame["type"] == "ping":
                    await ws.send('{"type":"pong"}')
                elif "event_id" in frame:
                    self.latencies.append((now - frame["data"]["sent_at"]) * 1000)
                    if len(self.latencies) >= self._expected:
                        self._arrived.set()
        except ConnectionClosed:
            pass
        self.closed.append(ws.close_code)

    async def wait_for_frames(self, count: int, within: float) -> None:
        """Until ``count`` frames have arrived since the last clear, or ``within`` seconds."""
        self._expected = count
        self._arrived.clear()
        if len(self.latencies) >= count:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), within)

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for reader in self._readers:
            reader.cancel()


def create_users(conninfo: str, count: int) -> list[UUID]:
    ids = [UUID(str(uuid7())) for _ in range(count)]
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO users (id, email) VALUES (%s, %s)",
            [(user_id, f"ws-bench-{n}@example.org") for n, user_id in enumerate(ids)],
        )
    return ids


async def run(
    args: argparse.Namespace, settings: Settings, env: dict[str, str], pid: int, users: list[UUID]
) -> dict[str, Any]:
    tokens = [issue_access_token(settings, u, "free", "user") for u in users]
    url = f"ws://127.0.0.1:{settings.server.port}/api/v1/ws"
    publisher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PUBLISHER,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    stdin, stdout = publisher.stdin, publisher.stdout
    if stdin is None or stdout is None:
        raise SystemExit("the publisher has no pipes")

    async def publish(shape: str, seconds: float, targets: list[UUID]) -> None:
        stdin.write((" ".join([shape, str(seconds), *map(str, targets)]) + "\n").encode())
        await stdin.drain()
        await stdout.readline()

    clients = Clients(url)
    await asyncio.sleep(2)
    rss_before = server_rss(pid)
    log(f"server RSS before: {rss_before / 2**20:.1f} MiB; opening {len(tokens)} sockets")
    started = time.perf_counter()
    await clients.open(tokens, args.concurrency)
    open_seconds = time.perf_counter() - started
    await asyncio.sleep(5)  # idle, settled
    rss_after = server_rss(pid)
    per_socket = (rss_after - rss_before) / len(clients.sockets)
    log(
        f"{len(clients.sockets)} sockets open in {open_seconds:.1f} s; server RSS "
        f"{rss_after / 2**20:.1f} MiB, {per_socket / 1024:.1f} KiB per socket"
    )

    rng = secrets.SystemRandom()
    steady_count = int(args.rate * args.seconds)
    steady_targets = [rng.choice(users) for _ in range(steady_count)]
    log(f"steady: {steady_count} events at {args.rate}/s to random users")
    await publish("steady", args.seconds, steady_targets)
    await clients.wait_for_frames(steady_count, 30)
    steady = clients.latencies[:]
    clients.latencies.clear()

    log(f"burst: one event to each of {len(users)} users at once")
    await publish("burst", 0, users)
    await clients.wait_for_frames(len(users), 60)
    burst = clients.latencies[:]

    dropped = len(clients.closed)
    await clients.close()
    stdin.close()
    await publisher.wait()
    return {
        "sockets": len(clients.sockets),
        "open_seconds": round(open_seconds, 2),
        "server_rss_before_mib": round(rss_before / 2**20, 1),
        "server_rss_after_mib": round(rss_after / 2**20, 1),
        "rss_per_socket_kib": round(per_socket / 1024, 1),
        "steady": {
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "sent": steady_count,
            **summary(steady),
        },
        "burst": {"sent": len(users), **summary(burst)},
        "sockets_closed_during_run": dropped,
    }


def settings_env(root: Path, settings: Settings) -> dict[str, str]:
    """Environment for a child process that reads exactly ``settings``."""
    config = root / "wingman.toml"
    config.write_bytes(msgspec.toml.encode(settings))
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    env.update(WINGMAN_CONFIG=str(config), WINGMAN_TUNING=str(root / "tuning.toml"))
    env["WINGMAN_LOG__LEVEL"] = "WARNING"
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=500.0, help="steady events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes at once")
    parser.add_argument("--name", default="ws-fanout")
    args = parser.parse_args()

    # Each socket is a file descriptor on both ends (and the server's children inherit this).
    limit = raise_file_limit(2 * args.sockets + 1000)
    if limit < args.sockets + 500:
        args.sockets = limit - 500
        log(f"open-files limit {limit}: capping at {args.sockets} sockets")

    server: subprocess.Popen[bytes] | None = None
    config = {"max_connections": 200, "shared_buffers": "256MB"}
    with private_services("ws", config, pool={}) as services:
        try:
            port = free_port()
            settings = msgspec.structs.replace(
                services.settings,
                server=ServerSettings(port=port, workers=args.workers, backlog=4096),
                realtime=RealtimeSettings(),
            )
            env = settings_env(services.root, settings)
            server = subprocess.Popen(
                [sys.executable, "-m", "wingman", "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if not wait_for(lambda: port_open(port), 60, interval=0.25):
                raise SystemExit("web server did not start")
            users = create_users(services.conninfo, args.sockets)
            result = uvloop.run(run(args, settings, env, server.pid, users))
        finally:
            if server is not None:
                server.terminate()
                server.wait(60)

    result.update(
        at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        workers=args.workers,
        cpus=os.cpu_count(),
        open_files_limit=limit,
    )
    write_report(args, result)
    return 0


def write_report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    out = REPO / "bench" / "results" / f"{dt.date.today().isoformat()}-{args.name}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    steady, burst = result["steady"], result["burst"]
    lines = [
        f"# {args.name} ({result['at']})",
        "",
        f"`wingmanctl serve` with {args.workers} Granian workers on {result['cpus']} CPUs; "
        f"{result['sockets']} WebSockets (one user each) from one client process on the same "
        "machine; events published by a separate process through the event bus (Redis pub/sub).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| sockets opened | {result['sockets']} in {result['open_seconds']} s |",
        f"| server RSS before / with all sockets idle | {result['server_rss_before_mib']} / "
        f"{result['server_rss_after_mib']} MiB |",
        f"| memory per idle connection (server) | {result['rss_per_socket_kib']} KiB |",
        f"| steady fan-out ({steady['rate_per_s']:.0f} events/s, {steady['count']}/"
        f"{steady['sent']} received) p50 / p99 / max | {steady['p50_ms']} / {steady['p99_ms']} "
        f"/ {steady['max_ms']} ms |",
        f"| burst fan-out (1 event to each of {burst['sent']} users at once, {burst['count']} "
        f"received) p50 / p99 / max | {burst['p50_ms']} / {burst['p99_ms']} / "
        f"{burst['max_ms']} ms |",
        f"| sockets closed by the server during the run | {result['sockets_closed_during_run']} |",
        "",
        "Latency is publish → receipt on the same clock; client, server, Redis and PostgreSQL "
        "share the machine's cores, so it includes the client's own scheduling.",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
