"""Chat fixtures: tones and helpers to start sessions and post messages (callers are shared)."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.support.accounts import Caller
from wingman.db.models import Tone


async def add_tone(engine: AsyncEngine, *, active: bool = True) -> UUID:
    tone_id = UUID(str(uuid7()))
    async with engine.begin() as connection:
        await connection.execute(
            insert(Tone).values(
                id=tone_id,
                slug=f"test-{time.time_ns()}",
                name="Test tone",
                prompt="Be kind.",
                is_active=active,
            )
        )
    return tone_id


async def new_session(
    client: AsyncTestClient[Litestar], caller: Caller, **body: Any
) -> dict[str, Any]:
    response = await client.post("/api/v1/sessions", json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def post_message(
    client: AsyncTestClient[Litestar], caller: Caller, session_id: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/sessions/{session_id}/messages", json=body, headers=caller.headers
    )
    assert response.status_code == 202, response.text
    pair: dict[str, Any] = response.json()
    return pair
