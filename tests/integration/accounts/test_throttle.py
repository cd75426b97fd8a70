"""The code-request throttle holds across processes: two Granian workers, one Redis."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.services import child_env, wait_until_ready
from wingman.config import Settings
from wingman.devstack.processes import free_port


@pytest.fixture
def two_worker_server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with (tmp_path / "web.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wingman", "serve", "--workers", "2", "--port", str(port)],
            env=child_env(settings, tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"

    try:
        assert wait_until_ready(base_url), (tmp_path / "web.log").read_text()
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def _request(base_url: str, source_ip: str, destination: str) -> httpx.Response:
    # A new connection per request (no keep-alive), so both workers get a share.
    transport = httpx.AsyncHTTPTransport(local_address=source_ip)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        return await client.post(
            f"{base_url}/api/v1/auth/otp/request",
            json={"channel": "email", "destination": destination},
        )


async def test_per_ip_and_per_destination_limits_hold_across_workers(
    two_worker_server: str,
) -> None:
    # One IP, many destinations: five pass, the rest are throttled on the IP.
    burst = await asyncio.gather(
        *(
            _request(two_worker_server, "127.0.0.10", f"ip-{uuid.uuid4().hex[:8]}@example.org")
            for _ in range(9)
        )
    )
    statuses = sorted(r.status_code for r in burst)
    assert statuses == [202] * 5 + [429] * 4
    throttled = next(r for r in burst if r.status_code == 429)
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert throttled.headers["RateLimit-Remaining"] == "0"
    assert throttled.json()["type"] == "urn:wingman:problem:rate-limited"
    assert throttled.json()["scope"] == "otp:ip"

    # One destination, many IPs: the destination's own allowance runs out after five.
    destination = f"Dest-{uuid.uuid4().hex[:8]}@Example.org"
    spread = await asyncio.gather(
        *(
            # Case differs per request: the limit is on the normalised address.
            _request(
                two_worker_server,
                f"127.0.1.{n}",
                destination.upper() if n % 2 else destination.lower(),
            )
            for n in range(1, 9)
        )
    )
    statuses = sorted(r.status_code for r in spread)
    assert statuses == [202] * 5 + [429] * 3
    assert {r.json()["scope"] for r in spread if r.status_code == 429} == {"otp:destination"}
