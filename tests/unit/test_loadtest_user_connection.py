"""A simulated user holds one keep-alive connection between requests, as DESIGN's user does.

Against a real HTTP server in the test that counts the connections it accepts: two requests
further apart than httpx's default keep-alive expiry (5 s) go over one connection, and when the
server closes it in between the next request opens another without an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from wingman.loadtest.stats import Recorder
from wingman.loadtest.user import Shared, SimUser

# Longer than httpx's default keep-alive expiry, which dropped every idle connection.
PAUSE_S = 5.5


@dataclass
class CountingServer:
    """HTTP/1.1 keep-alive server answering ``{}`` to everything, counting connections."""

    port: int = 0
    accepted: int = 0
    close_after_each: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: 2\r\n\r\n{}"
                )
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[CountingServer]:
    counting = CountingServer()
    listener = await asyncio.start_server(counting.handle, "127.0.0.1", 0)
    counting.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield counting


def _user(server: CountingServer, recorder: Recorder) -> SimUser:
    shared = Shared(
        base_url=f"http://127.0.0.1:{server.port}",
        tls=None,
        codes=None,
        recorder=recorder,
        cycle_seconds=60.0,
        stop=asyncio.Event(),
    )
    return SimUser(0, shared, "connection-test", token="not-checked")


async def test_requests_far_apart_share_one_connection(server: CountingServer) -> None:
    recorder = Recorder(measuring=True)
    user = _user(server, recorder)
    try:
        assert await user._call("tones", "GET", "/api/v1/tones") == {}
        await asyncio.sleep(PAUSE_S)
        assert await user._call("config", "GET", "/api/v1/config") == {}
    finally:
        await user.http.aclose()
    assert server.accepted == 1
    assert not recorder.errors


async def test_a_connection_the_server_closed_is_opened_again(server: CountingServer) -> None:
    server.close_after_each = True
    recorder = Recorder(measuring=True)
    user = _user(server, recorder)
    try:
        assert await user._call("tones", "GET", "/api/v1/tones") == {}
        await asyncio.sleep(0.2)
        assert await user._call("config", "GET", "/api/v1/config") == {}
    finally:
        await user.http.aclose()
    assert server.accepted == 2
    assert not recorder.errors
