"""Chat fixtures: callers signed in without the code flow, a database engine, tones."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.support.accounts import Caller, create_caller
from wingman.config import Settings
from wingman.db.models import Tone
from wingman.server.database import create_engine


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database, "wingman-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def alice(engine: AsyncEngine, settings: Settings) -> Caller:
    return await create_caller(engine, settings)


@pytest.fixture
async def bob(engine: AsyncEngine, settings: Settings) -> Caller:
    return await create_caller(engine, settings)


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
