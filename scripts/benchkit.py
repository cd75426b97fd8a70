"""What the HTTP benchmarks under scripts/ share: private servers, a web process, a driver.

- :func:`private_services`: the dev stack's throwaway services (PostgreSQL with a migrated
  ``wingman`` database, queue/cache Redis) under a temporary folder, stopped and removed after.
- :func:`start_web`: a real ``wingmanctl serve`` process (one worker) on a free port with the given
  settings and its own metrics folder, returned once ``/health/ready`` answers.
- :func:`drive`: requests per second over keep-alive connections with a minimal HTTP/1.1 client
  (40-95 us of CPU per request on the 2-core benchmark host, measured by :class:`CpuPerRequest`
  and reported, since it shares the cores with the servers).
- :class:`CpuPerRequest`: the server side's CPU per request (web process tree, PostgreSQL,
  Redis) from ``/proc``, so a figure per core does not depend on how busy the client kept it.

The scripts import it as a sibling module (``python scripts/bench_x.py`` puts scripts/ first on
the import path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg

from wingman.config import MetricsSettings, Settings
from wingman.db.migrations import upgrade_to_head
from wingman.devstack.processes import free_port, wait_for
from wingman.devstack.services import throwaway_services
from wingman.loadtest.processes import ProcessSampler
from wingman.loadtest.report import free_name

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# An allowance nobody reaches in a benchmark run.
ROOMY = {"limit": 100_000_000, "period": "hour"}
POOL = {"pool_size": 15}


def write_results(
    name: str, fields: dict[str, Any], body: list[str], tag: str | None = None
) -> None:
    """Write bench/results/<date>-<name>[-<tag>][-<n>].json (``fields`` with the name, time and
    core count) and .md (a heading, then ``body``), and print the Markdown."""
    now = datetime.now(UTC)
    report = {
        "name": name,
        "at": now.isoformat(timespec="seconds"),
        "host_cores": os.cpu_count(),
        "code": code_version(),
        **fields,
    }
    base = "-".join([now.date().isoformat(), name, *([tag] if tag else [])])
    # Never over an earlier run's files: a second run of one name on one day gets "-2", "-3"...
    out = RESULTS / free_name(RESULTS, base)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# {name} ({report['at']})", "", f"Code: {report['code']}.", "", *body]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def code_version() -> str:
    """The commit the benchmark ran, marked when the working tree differs from it."""
    described = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty=+uncommitted changes"],
        capture_output=True,
        text=True,
        check=False,
    )
    return described.stdout.strip() or "unknown (not a git checkout)"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Services:
    root: Path
    database_url: str
    settings: Settings
    # Root pids of PostgreSQL (its postmaster) and the two Redis servers, by name.
    pids: dict[str, int]

    @property
    def conninfo(self) -> str:
        """The database URL for plain psycopg."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def private_services(
    prefix: str, config: dict[str, object] | None = None, pool: dict[str, int] | None = None
) -> Iterator[Services]:
    """``config``: PostgreSQL settings (by default 100 connections); ``pool``: the settings'
    database pool fields (by default 10 + 5; ``{}``: the settings' defaults)."""
    with throwaway_services(
        f"wingman-bench-{prefix}-", config or {"max_connections": 100}, database="wingman"
    ) as services:
        url = services.postgres.url("wingman")
        upgrade_to_head(url)
        settings = services.settings("wingman", **(POOL if pool is None else pool))
        settings = msgspec.structs.replace(
            settings, log=msgspec.structs.replace(settings.log, format="json")
        )
        # CPU reports name PostgreSQL's share "postgresql".
        pids = {("postgresql" if n == "postgres" else n): p for n, p in services.pids().items()}
        yield Services(services.root, url, settings, pids)


def seed_user(url: str, tier: str = "free") -> uuid.UUID:
    """One user, and every allowance (tiers, chat, ai) far above what a run sends."""
    user_id = uuid.uuid4()
    limits = dict.fromkeys(
        ("anon", "user", "premium", "chat", "chat_premium", "ai", "ai_premium"), ROOMY
    )
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(
            "INSERT INTO users (id, email, tier, role, status, created_at, updated_at)"
            " VALUES (%s, %s, %s, 'user', 'active', now(), now())",
            (user_id, f"bench-{user_id.hex[:8]}@example.org", tier),
        )
        conn.execute(
            "INSERT INTO global_config (key, value, updated_at) VALUES ('rate_limits', %s, now())"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (json.dumps(limits),),
        )
    return user_id


def start_web(
    root: Path,
    settings: Settings,
    name: str,
    command: list[str] | None = None,
    source: str | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """``wingmanctl serve`` (or ``command`` + ``--port``) with ``settings``, once it is ready;
    ``source``: a folder holding another ``wingman`` package to serve instead of this one."""
    folder = root / name
    folder.mkdir()
    settings = msgspec.structs.replace(settings, metrics=MetricsSettings(dir=str(folder / "m")))
    config = folder / "wingman.toml"
    config.write_bytes(msgspec.toml.encode(settings))
    config.chmod(0o600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    env.update(WINGMAN_CONFIG=str(config), WINGMAN_TUNING=str(folder / "tuning.toml"))
    if source is not None:
        env["PYTHONPATH"] = source
    argv = command or [sys.executable, "-m", "wingman", "serve", "--workers", "1"]
    log_path = folder / "server.log"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(
            [*argv, "--port", str(port)], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).is_success
        except httpx.HTTPError:
            return False

    if not wait_for(ready, 60, interval=0.25):
        server.terminate()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise SystemExit(f"{name} server did not become ready; the end of its output:\n{tail}")
    return server, port


def stop_all(servers: list[subprocess.Popen[bytes]]) -> None:
    for server in servers:
        server.terminate()
        server.wait(30)


async def _connection(
    port: int, request: bytes, deadline: float, ok: int, counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            counts[0 if status == ok else 1] += 1
    finally:
        writer.close()


def http_request(method: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Accept-Encoding: identity\r\n"
    )
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def drive(
    port: int, request: bytes, seconds: float, connections: int, ok: int = 200
) -> float:
    """Requests per second answered ``ok`` over ``seconds`` (anything else aborts the run)."""
    counts = [0, 0]
    start = time.monotonic()
    await asyncio.gather(
        *(_connection(port, request, start + seconds, ok, counts) for _ in range(connections))
    )
    elapsed = time.monotonic() - start
    if counts[1]:
        raise SystemExit(f"{counts[1]} requests were not answered {ok}: {request[:60]!r}")
    return counts[0] / elapsed


# A case: (port, raw request, expected status).
Case = tuple[int, bytes, int]
# CpuPerRequest's name for the CPU of this process, which drives the requests.
LOAD_GENERATOR = "load generator"


@dataclass
class CpuPerRequest:
    """Server-side CPU per answered request, measured by :func:`alternating_rounds`.

    ``roots`` names, per case, the process trees its requests keep busy (the web server and the
    data services) by their root pids; ``rounds`` gets, per case and tree, the CPU microseconds
    per request of every round (from ``/proc``), and the load generator's own apart.
    """

    roots: dict[str, dict[str, int]]
    # Per case and tree (and :data:`LOAD_GENERATOR`), microseconds per request of each round.
    rounds: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def measure(self, case: str, run: Callable[[], float]) -> float:
        """``run()`` (which returns requests/s), with the CPU its trees used recorded."""
        sampler = ProcessSampler(self.roots[case])
        sampler.start()
        start, own = time.monotonic(), time.process_time()
        rps = run()
        wall, own = time.monotonic() - start, time.process_time() - own
        sampler.stop()
        answered = max(rps * wall, 1.0)
        used = sampler.cpu_seconds()
        used[LOAD_GENERATOR] = own
        for tree, seconds in used.items():
            per_request = round(seconds / answered * 1e6, 1)
            self.rounds.setdefault(case, {}).setdefault(tree, []).append(per_request)
        return rps

    def medians(self, case: str) -> dict[str, float]:
        """Median CPU microseconds per request of each tree of ``case``."""
        return {tree: statistics.median(v) for tree, v in self.rounds.get(case, {}).items()}


def alternating_rounds(
    cases: dict[str, Case], args: Any, cpu: CpuPerRequest | None = None
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Drive every case in turn, ``args.rounds`` times (after a 1 s warm-up each), so drift on
    a shared host hits all alike. Returns the median requests/s per case and every round; with
    ``cpu``, each round's server-side CPU per request is recorded there too."""
    for port, request, ok in cases.values():  # warm-up: caches, pools, first-call costs
        asyncio.run(drive(port, request, 1.0, args.connections, ok))
    rounds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (port, request, ok) in cases.items():

            def run(port: int = port, request: bytes = request, ok: int = ok) -> float:
                return asyncio.run(drive(port, request, args.seconds, args.connections, ok))

            rps = run() if cpu is None else cpu.measure(name, run)
            rounds[name].append(round(rps, 1))
    return {name: statistics.median(values) for name, values in rounds.items()}, rounds


def _tag(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9-]{1,40}", text):
        raise argparse.ArgumentTypeError("lower-case letters, digits and dashes only")
    return text


def bench_arguments(
    description: str, more: Callable[[argparse.ArgumentParser], object] | None = None
) -> argparse.Namespace:
    """The options every benchmark takes, and those ``more`` adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--tag",
        type=_tag,
        help="appended to the results files' name (without it, a second run on one day is "
        "written as <name>-2)",
    )
    if more is not None:
        more(parser)
    return parser.parse_args()
