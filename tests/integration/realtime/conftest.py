"""The WebSocket served for real, in this process: the app under Granian's embedded server.

Granian runs on the test's event loop, so the dispatcher, Redis and the ``websockets`` clients
all talk over real sockets. The realtime timings are shortened so heartbeats, expiry and the
resume window can be watched within a few seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
from granian.constants import Interfaces
from granian.server.embed import Server
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.accounts import Caller, create_caller
from tests.support.polling import eventually
from wingman.app import create_app
from wingman.config import RealtimeSettings, Settings
from wingman.devstack.processes import free_port, port_open
from wingman.domain.realtime.events import EventBus
from wingman.server.database import create_engine

REALTIME = RealtimeSettings(
    history_size=20,
    auth_timeout_seconds=1.0,
    outbound_queue_size=64,
    heartbeat_interval_seconds=1.0,
    heartbeat_timeout_seconds=3.0,
    max_sockets_per_user=3,
    resume_wait_seconds=0.5,
    close_timeout_seconds=1.0,
)


@pytest.fixture(scope="module")
def ws_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, realtime=REALTIME)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The app under Granian's embedded server on this loop; yields the WebSocket's URL."""
    port = free_port()
    server = Server(create_app(settings), interface=Interfaces.ASGI, port=port, log_enabled=False)
    task = asyncio.create_task(server.serve())

    async def ready() -> bool:
        # The lifespan (Redis, the database) may lag the listener: wait until the app is ready.
        if not port_open(port):
            return False
        async with httpx.AsyncClient() as client:
            try:
                answer = await client.get(f"http://127.0.0.1:{port}/health/ready")
            except httpx.TransportError:
                return False
        return answer.status_code == 200

    await eventually(ready, 30, "the served app's /health/ready")
    try:
        yield f"ws://127.0.0.1:{port}/api/v1/ws"
    finally:
        server.stop()
        await asyncio.wait_for(task, 30)


@pytest.fixture(scope="module")
async def ws_url(ws_settings: Settings) -> AsyncIterator[str]:
    async with serving(ws_settings) as url:
        yield url


@pytest.fixture(scope="module")
async def engine(ws_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(ws_settings.database, "wingman-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def caller(engine: AsyncEngine, ws_settings: Settings) -> Caller:
    return await create_caller(engine, ws_settings)


@pytest.fixture
def bus(redis_queue: Any, ws_settings: Settings) -> EventBus:
    # The publisher trims the history, so it uses the server's settings.
    return EventBus(
        redis_queue,
        history_size=ws_settings.realtime.history_size,
        history_seconds=ws_settings.realtime.history_seconds,
    )


def token_of(caller: Caller) -> str:
    return caller.headers["Authorization"].removeprefix("Bearer ")


def open_socket(url: str, token: str | None = None, **options: Any) -> Any:
    """``async with open_socket(...) as ws``: a client, offering ``token`` as a subprotocol."""
    return connect(
        url,
        subprotocols=["bearer", token] if token is not None else None,  # type: ignore[list-item]
        proxy=None,
        compression=None,
        open_timeout=5,
        **options,
    )


async def receive(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), within)
    frame: dict[str, Any] = json.loads(raw)
    return frame


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def close_code(ws: ClientConnection, within: float = 10.0) -> int | None:
    """Read until the server closes; the code it sent (None when no close frame came)."""
    async with asyncio.timeout(within):
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
    return ws.close_code
