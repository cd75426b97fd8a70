"""Accounts fixtures: a real ``default`` queue worker whose log is where codes are read from."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.support.services import child_env
from wingman.config import Settings


@dataclass
class WorkerLog:
    """A running ``wingmanctl worker --queue default`` and the JSON log lines it wrote."""

    process: subprocess.Popen[bytes]
    path: Path

    def lines(self) -> list[dict[str, Any]]:
        entries = []
        for raw in self.path.read_text().splitlines():
            try:
                entries.append(json.loads(raw))
            except json.JSONDecodeError:
                entries.append({"event": raw})
        return entries

    def wait_for(self, event: str, timeout: float = 30, **match: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.lines():
                if entry.get("event") == event and all(entry.get(k) == v for k, v in match.items()):
                    return entry
            if self.process.poll() is not None:
                pytest.fail(f"worker exited {self.process.returncode}:\n{self.path.read_text()}")
            time.sleep(0.05)
        pytest.fail(f"no {event} {match} in the worker log within {timeout} s")

    def code_for(self, request_id: str, timeout: float = 30) -> str:
        """The code the ``log`` backend wrote for ``request_id``."""
        entry = self.wait_for("otp_code", timeout, request_id=request_id)
        return str(entry["code"])


def start_worker(settings: Settings, folder: Path) -> WorkerLog:
    log_path = folder / "worker.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "wingman", "worker", "--queue", "default"],
            env=child_env(settings, folder),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerLog(process, log_path)
    worker.wait_for("worker_started")
    return worker


def stop_worker(worker: WorkerLog) -> None:
    if worker.process.poll() is None:
        worker.process.terminate()
        try:
            worker.process.wait(30)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait(10)


@pytest.fixture(scope="module")
def otp_worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerLog]:
    worker = start_worker(settings, tmp_path_factory.mktemp("otp-worker"))
    try:
        yield worker
    finally:
        stop_worker(worker)


@pytest.fixture(autouse=True)
async def fresh_rate_limits(redis_queue: Redis) -> None:
    """Every test starts with empty allowances (the test client always comes from one IP)."""
    keys = [key async for key in redis_queue.scan_iter(match="wingman:ratelimit*")]
    if keys:
        await redis_queue.delete(*keys)


async def request_code(client: AsyncTestClient[Litestar], channel: str, destination: str) -> str:
    response = await client.post(
        "/api/v1/auth/otp/request", json={"channel": channel, "destination": destination}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["request_id"])


async def sign_in(
    client: AsyncTestClient[Litestar], worker: WorkerLog, channel: str, destination: str
) -> dict[str, Any]:
    """The whole flow a client goes through; returns the verify response body."""
    request_id = await request_code(client, channel, destination)
    code = worker.code_for(request_id)
    response = await client.post(
        "/api/v1/auth/otp/verify", json={"request_id": request_id, "code": code}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
async def signed_in(client: AsyncTestClient[Litestar], otp_worker: WorkerLog) -> dict[str, Any]:
    """A fresh user, signed in by email."""
    return await sign_in(client, otp_worker, "email", f"user-{time.time_ns()}@example.org")
