"""Request limits across two Granian workers sharing one Redis, the client IP behind a trusted
proxy, and the request log, against a real ``wingmanctl serve`` process."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.accounts import create_caller
from tests.support.ratelimits import clear_rate_limit_counts, set_rate_limits
from tests.support.services import child_env, wait_until_ready
from wingman.config import ServerSettings, Settings
from wingman.devstack.processes import free_port
from wingman.server.database import create_engine

pytestmark = pytest.mark.e2e

ANON = 7
USER = 6
# Above the most requests any test here keeps open at once from one address.
CONNECTION_CAP = 12


@dataclass
class Server:
    url: str
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        entries = []
        for raw in self.log.read_text().splitlines():
            try:
                entries.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
        return entries

    def request_line(self, request_id: str) -> dict[str, Any]:
        for _ in range(100):
            for entry in self.lines():
                if entry.get("event") == "request" and entry.get("request_id") == request_id:
                    return entry
            time.sleep(0.05)
        pytest.fail(f"no request line for {request_id}:\n{self.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("limits")
    local = msgspec.structs.replace(
        settings,
        server=ServerSettings(trusted_proxies=["127.0.0.1"], max_connections_per_ip=CONNECTION_CAP),
    )
    port = free_port()
    log_path = folder / "web.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wingman", "serve", "--workers", "2", "--port", str(port)],
            env=child_env(local, folder),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    try:
        assert wait_until_ready(url), log_path.read_text()[-3000:]
        yield Server(url, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
async def tiny_allowances(server: Server, settings: Settings) -> AsyncIterator[None]:
    """Set while the server runs: every worker must pick the change up without a restart."""
    await clear_rate_limit_counts(settings)
    await set_rate_limits(
        settings,
        {
            "anon": {"limit": ANON, "period": "minute"},
            "user": {"limit": USER, "period": "minute"},
        },
    )
    try:
        seen: list[str] = []
        for n in range(200):
            # New connections from a throwaway address: each lands on either worker.
            response = await call(
                server.url, f"127.0.3.{n % 250 + 1}", "POST", "/api/v1/auth/logout"
            )
            seen.append(response.headers.get("RateLimit-Limit", ""))
            if seen[-8:] == [str(ANON)] * 8:
                break
            await asyncio.sleep(0.02)
        assert seen[-8:] == [str(ANON)] * 8, seen[-10:]
        await clear_rate_limit_counts(settings)
        yield
    finally:
        await set_rate_limits(settings, {})
        await clear_rate_limit_counts(settings)


async def call(
    base_url: str,
    source_ip: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    # A new connection per request (no keep-alive), so both workers get a share.
    transport = httpx.AsyncHTTPTransport(local_address=source_ip)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        body = {"refresh_token": "x" * 40} if method == "POST" else None
        return await client.request(method, f"{base_url}{path}", headers=headers, json=body)


async def test_limits_hold_exactly_across_workers(
    server: Server, settings: Settings, tiny_allowances: None
) -> None:
    anonymous = await asyncio.gather(
        *(call(server.url, "127.0.2.1", "POST", "/api/v1/auth/logout") for _ in range(ANON + 3))
    )
    assert sorted(r.status_code for r in anonymous) == [204] * ANON + [429] * 3
    assert {r.json()["scope"] for r in anonymous if r.status_code == 429} == {"anon:ip"}

    engine = create_engine(settings.database, "wingman-tests")
    try:
        caller = await create_caller(engine, settings)
    finally:
        await engine.dispose()
    # Spread over many source addresses: the user's allowance does not care where they are.
    signed_in = await asyncio.gather(
        *(
            call(server.url, f"127.0.2.{n + 10}", "GET", "/api/v1/me", caller.headers)
            for n in range(USER + 3)
        )
    )
    assert sorted(r.status_code for r in signed_in) == [200] * USER + [429] * 3
    assert all(r.headers["RateLimit-Limit"] == str(USER) for r in signed_in)
    # The requests really were split between the two workers.
    pids = {server.request_line(r.headers["X-Request-ID"])["pid"] for r in anonymous + signed_in}
    assert len(pids) == 2
    assert {r.headers["RateLimit-Remaining"] for r in signed_in if r.status_code == 429} == {"0"}


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    server: Server, tiny_allowances: None
) -> None:
    forwarded = {"X-Forwarded-For": "192.0.2.200, 198.51.100.7", "X-Request-ID": "via-proxy"}
    await call(server.url, "127.0.0.1", "POST", "/api/v1/auth/logout", forwarded)
    forged = {"X-Forwarded-For": "198.51.100.7", "X-Request-ID": "not-via-proxy"}
    await call(server.url, "127.0.2.50", "POST", "/api/v1/auth/logout", forged)
    assert server.request_line("via-proxy")["client_ip"] == "198.51.100.7"
    assert server.request_line("not-via-proxy")["client_ip"] == "127.0.2.50"

    # Behind the proxy each client has its own allowance.
    behind = [
        await call(
            server.url,
            "127.0.0.1",
            "POST",
            "/api/v1/auth/logout",
            {"X-Forwarded-For": "198.51.100.8"},
        )
        for _ in range(ANON + 1)
    ]
    assert [r.status_code for r in behind] == [204] * ANON + [429]
    other = await call(
        server.url, "127.0.0.1", "POST", "/api/v1/auth/logout", {"X-Forwarded-For": "198.51.100.9"}
    )
    assert other.status_code == 204


async def test_each_request_is_one_log_line_with_its_id(server: Server, settings: Settings) -> None:
    engine = create_engine(settings.database, "wingman-tests")
    try:
        caller = await create_caller(engine, settings)
    finally:
        await engine.dispose()
    given = await call(
        server.url,
        "127.0.2.60",
        "GET",
        "/api/v1/sessions?cursor=query-secret-value",
        {**caller.headers, "X-Request-ID": "client-chosen-42"},
    )
    assert given.headers["X-Request-ID"] == "client-chosen-42"
    line = server.request_line("client-chosen-42")
    assert line["method"] == "GET"
    assert line["route"] == "/api/v1/sessions"
    assert line["status"] == given.status_code
    assert line["user_id"] == str(caller.id)
    assert line["client_ip"] == "127.0.2.60"
    assert isinstance(line["duration_ms"], float)

    # Other lines logged while serving a request carry its id too (here: a refused value).
    transport = httpx.AsyncHTTPTransport(local_address="127.0.2.62")
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        refused = await client.post(
            f"{server.url}/api/v1/profiles",
            json={"name": "nul\u0000here"},
            headers={**caller.headers, "X-Request-ID": "with-a-warning"},
        )
    assert refused.status_code == 422, refused.text
    warnings = [e for e in server.lines() if e.get("event") == "unstorable_value"]
    assert [e["request_id"] for e in warnings] == ["with-a-warning"]

    made = await call(server.url, "127.0.2.61", "GET", "/api/v1/sessions/not-a-uuid")
    made_id = made.headers["X-Request-ID"]
    assert server.request_line(made_id)["user_id"] is None

    text = server.log.read_text()
    assert "query-secret-value" not in text
    assert caller.headers["Authorization"].split()[1] not in text


async def test_an_address_holding_too_much_open_is_refused(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])

    async def half_sent_request() -> tuple[asyncio.StreamWriter, bytes]:
        """Headers that promise a body that never comes: the request stays in flight unless it
        is refused at once (then its answer is returned)."""
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.4.1", 0)
        )
        writer.write(
            b"POST /api/v1/auth/logout HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(200), 0.2)
        except TimeoutError:
            answer = b""
        return writer, answer

    # The cap is per worker and the kernel hands each connection to either, so a run of refusals
    # may all have met the full worker while the other still has room: stop only after a run long
    # enough that this is no longer plausible (2**-40). Refusals come back at once, so it is cheap.
    held: list[asyncio.StreamWriter] = []
    refused_in_a_row = 0
    try:
        while refused_in_a_row < 40:
            assert len(held) <= 2 * CONNECTION_CAP, "more held open than two workers allow"
            writer, answer = await half_sent_request()
            if answer:
                assert answer.startswith(b"HTTP/1.1 429"), answer
                refused_in_a_row += 1
                writer.close()
            else:
                held.append(writer)
                refused_in_a_row = 0
        assert len(held) == 2 * CONNECTION_CAP
        refused = await call(server.url, "127.0.4.1", "GET", "/api/v1/tones")
        assert refused.status_code == 429
        assert refused.json()["type"] == "urn:wingman:problem:connection-limit"
        with pytest.raises(InvalidStatus) as handshake:
            async with connect(
                server.url.replace("http", "ws") + "/api/v1/ws", local_addr=("127.0.4.1", 0)
            ):
                pass
        assert handshake.value.response.status_code == 403
        # Another address is not affected, nor are health checks.
        other = await call(server.url, "127.0.4.2", "POST", "/api/v1/auth/logout")
        assert other.status_code == 204
        health = await call(server.url, "127.0.4.1", "GET", "/health/live")
        assert health.status_code == 200
    finally:
        for writer in held:
            writer.close()
    for _ in range(50):
        again = await call(server.url, "127.0.4.1", "POST", "/api/v1/auth/logout")
        if again.status_code == 204:
            break
        await asyncio.sleep(0.1)
    assert again.status_code == 204
