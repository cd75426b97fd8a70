"""The per-user socket limit against a real ``wingmanctl serve`` with two Granian workers.

Hundreds of sockets of one user opened at once, spread over both workers: whatever the
interleaving of registrations and eviction announcements, exactly ``max_sockets_per_user`` stay
open and answer, and every other one is closed with 4009.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.e2e.test_realtime import WebServer, engine, open_socket
from tests.support.accounts import create_caller
from wingman.config import RealtimeSettings, Settings
from wingman.domain.realtime.protocol import CloseCode

pytestmark = pytest.mark.e2e

__all__ = ["engine"]

LIMIT = 5
SOCKETS = 200


@pytest.fixture(scope="module")
def limited_server(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    web = WebServer(
        settings,
        tmp_path_factory.mktemp("realtime-limits"),
        realtime=RealtimeSettings(max_sockets_per_user=LIMIT, auth_timeout_seconds=20.0),
    )
    web.start()
    try:
        yield web
    finally:
        web.shut_down()


async def ping(ws: ClientConnection, within: float = 10.0) -> str:
    """``pong`` when the socket answers a ``ping``, ``closed`` when the server closed it,
    ``silent`` when it neither answers nor closes (a zombie)."""
    try:
        await ws.send(json.dumps({"type": "ping"}))
        async with asyncio.timeout(within):
            while True:
                if json.loads(await ws.recv())["type"] == "pong":
                    return "pong"
    except ConnectionClosed:
        return "closed"
    except TimeoutError:
        return "silent"


async def test_hundreds_of_concurrent_sockets_leave_exactly_the_limit_open(
    limited_server: WebServer, engine: AsyncEngine, settings: Settings
) -> None:
    user = await create_caller(engine, settings)
    opened = await asyncio.gather(
        *(open_socket(limited_server, user, open_timeout=60) for _ in range(SOCKETS)),
        return_exceptions=True,
    )
    sockets = [ws for ws in opened if isinstance(ws, ClientConnection)]
    try:
        # A socket evicted during its handshake may fail to open at all; most must have opened.
        assert len(sockets) > SOCKETS // 2, [
            o for o in opened if not isinstance(o, ClientConnection)
        ]
        deadline = time.monotonic() + 30
        while True:
            answers = await asyncio.gather(*(ping(ws) for ws in sockets))
            alive = [ws for ws, answer in zip(sockets, answers, strict=True) if answer == "pong"]
            if len(alive) <= LIMIT or time.monotonic() > deadline:
                break
        assert answers.count("silent") == 0
        assert len(alive) == LIMIT
        closed = [ws for ws, answer in zip(sockets, answers, strict=True) if answer == "closed"]
        # The closing handshake completes right after the close frame: poll briefly for it.
        for ws in closed:
            async with asyncio.timeout(10):
                await ws.wait_closed()
        codes = {ws.close_code for ws in closed}
        assert codes == {CloseCode.REPLACED}
        # The survivors stay open: no late eviction, and they keep answering.
        assert await asyncio.gather(*(ping(ws) for ws in alive)) == ["pong"] * LIMIT
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
