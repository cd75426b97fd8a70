"""No connection wall: one ``wingmanctl serve`` worker with the default settings, started from a
shell-like soft open-file limit of 1,024, holds 5,000 keep-alive clients at once and answers each
of them promptly, twice over the same connections.

Before ``server.connections_per_worker`` existed, Granian held ``backlog / workers`` (1,024)
connections per worker and every client past those waited, unanswered, until one left; the
process's soft limit of 1,024 descriptors would also have refused most accepts.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.support.web import running_server
from wingman.config import ServerSettings, Settings

pytestmark = pytest.mark.e2e

CLIENTS = 5_000
# Generous for a 2-core machine shared with the client: the point is "seconds", not "minutes".
ROUND_DEADLINE_SECONDS = 60.0
SHELL_SOFT_LIMIT = 1024


@pytest.fixture
def default_server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """``wingmanctl serve`` with one worker and the default server settings."""
    served = msgspec.structs.replace(settings, server=ServerSettings())
    assert served.server.workers == 1
    with running_server(served, tmp_path, soft_open_files=SHELL_SOFT_LIMIT) as server:
        yield server.url


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """One keep-alive ``GET /health/live`` on an open connection; its status code."""
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _hold_and_ask(port: int) -> tuple[list[float], list[float]]:
    """Open CLIENTS connections, keep them all, ask twice on each; seconds per round's answers."""
    connect_gate = asyncio.Semaphore(500)  # a connect storm, bounded by the listen backlog

    async def open_one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with connect_gate:
            return await asyncio.open_connection("127.0.0.1", port)

    connections = await asyncio.gather(*(open_one() for _ in range(CLIENTS)))
    try:
        rounds: list[list[float]] = []
        for _ in range(2):
            started = time.monotonic()

            async def ask(
                conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], started: float = started
            ) -> float:
                assert await _get(*conn) == 200
                return time.monotonic() - started

            rounds.append(
                await asyncio.wait_for(
                    asyncio.gather(*(ask(conn) for conn in connections)),
                    ROUND_DEADLINE_SECONDS,
                )
            )
        return rounds[0], rounds[1]
    finally:
        for _, writer in connections:
            writer.close()


def test_one_worker_holds_five_thousand_keep_alive_clients(default_server: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < CLIENTS + 512:
        pytest.skip(f"this machine's hard open-file limit ({hard}) cannot hold {CLIENTS} clients")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, CLIENTS + 512), hard))
    port = int(default_server.rsplit(":", 1)[1])
    try:
        first, second = asyncio.run(_hold_and_ask(port))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(first) == len(second) == CLIENTS
    first.sort()
    second.sort()
    print(
        f"\n{CLIENTS} keep-alive clients on one worker: first answers all in {first[-1]:.2f} s "
        f"(p50 {first[CLIENTS // 2]:.2f} s), second round on the same connections in "
        f"{second[-1]:.2f} s (p50 {second[CLIENTS // 2]:.2f} s)"
    )
