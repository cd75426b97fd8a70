"""A simulated user holds one keep-alive connection between requests, as DESIGN's user does.

Against a real HTTP server in the test that counts the connections it accepts: two requests
further apart than httpx's default keep-alive expiry (5 s) go over one connection, and when the
server closes it in between the next request opens another without an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.load_users import KeepAliveServer, serving, sim_user
from wingman.loadtest.stats import Recorder
from wingman.loadtest.user import SimUser

# Longer than httpx's default keep-alive expiry, which dropped every idle connection.
PAUSE_S = 5.5


@pytest.fixture
async def server() -> AsyncIterator[KeepAliveServer]:
    async with serving(KeepAliveServer()) as counting:
        yield counting


def _user(server: KeepAliveServer, recorder: Recorder) -> SimUser:
    return sim_user(server.port, recorder, "connection-test")


async def test_requests_far_apart_share_one_connection(server: KeepAliveServer) -> None:
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


async def test_a_connection_the_server_closed_is_opened_again(server: KeepAliveServer) -> None:
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
