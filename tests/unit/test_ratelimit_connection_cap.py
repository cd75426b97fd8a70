"""The per-IP cap on open requests and WebSockets, driven as a plain ASGI app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wingman.server.client_ip import ClientAddresses
from wingman.server.connection_cap import ConnectionCap


class HeldOpen:
    """An app whose requests stay open until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.served = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.served += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def scope(kind: str, ip: str, path: str = "/api/v1/me") -> dict[str, Any]:
    return {"type": kind, "path": path, "client": (ip, 1234), "headers": []}


async def call(app: ConnectionCap, asgi_scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(asgi_scope, receive, send)  # type: ignore[arg-type]
    return sent


async def test_an_address_over_its_cap_is_refused_until_one_finishes() -> None:
    inner = HeldOpen()
    cap = ConnectionCap(inner, ClientAddresses(), limit=2)  # type: ignore[arg-type]
    held = [asyncio.create_task(call(cap, scope("http", "192.0.2.1"))) for _ in range(2)]
    await asyncio.sleep(0)
    assert cap.open == {"192.0.2.1": 2}

    refused = await call(cap, scope("http", "192.0.2.1"))
    assert refused[0]["status"] == 429
    assert json.loads(refused[1]["body"])["type"] == "urn:wingman:problem:connection-limit"
    socket = await call(cap, scope("websocket", "192.0.2.1"))
    assert socket == [{"type": "websocket.close", "code": 1013, "reason": ""}]

    # Other addresses and health checks are not affected.
    other = asyncio.create_task(call(cap, scope("http", "192.0.2.2")))
    health = asyncio.create_task(call(cap, scope("http", "192.0.2.1", "/health/live")))
    await asyncio.sleep(0)
    assert inner.served == 4

    inner.release.set()
    await asyncio.gather(*held, other, health)
    assert cap.open == {}
    assert (await call(cap, scope("http", "192.0.2.1")))[0]["status"] == 200


async def test_zero_turns_the_cap_off() -> None:
    inner = HeldOpen()
    inner.release.set()
    cap = ConnectionCap(inner, ClientAddresses(), limit=0)  # type: ignore[arg-type]
    results = await asyncio.gather(*(call(cap, scope("http", "192.0.2.1")) for _ in range(20)))
    assert all(result[0]["status"] == 200 for result in results)
