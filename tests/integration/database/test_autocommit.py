"""The autocommit engine: reads and one-statement writes without ``BEGIN`` and ``COMMIT`` round
trips, on the same pool as the transactional engine, which stays transactional."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.backends import backend_query
from wingman.config import Settings
from wingman.server.auth import load_standing
from wingman.server.database import autocommit_engine, create_engine


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine whose pool holds a single connection, so every use is the same backend."""
    engine = create_engine(msgspec.structs.replace(settings.database, pool_size=1), "wingman-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_a_read_is_one_statement_outside_a_transaction(
    settings: Settings, one_connection: AsyncEngine, engine: AsyncEngine
) -> None:
    reads = autocommit_engine(one_connection, settings.database)
    async with reads.connect() as connection:
        pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    assert await load_standing(reads, uuid4()) is None  # no such account
    last, state = await backend_query(engine, pid)
    # With a transaction the backend's last statement would be COMMIT or ROLLBACK.
    assert last.startswith("SELECT users.status, users.tier"), last
    assert state == "idle"


async def test_the_pool_stays_transactional_after_autocommit_use(
    settings: Settings, one_connection: AsyncEngine
) -> None:
    reads = autocommit_engine(one_connection, settings.database)
    async with reads.connect() as connection:
        await connection.execute(text("CREATE TEMP TABLE IF NOT EXISTS probe (n int)"))
        await connection.execute(text("INSERT INTO probe VALUES (1)"))  # committed at once
    async with one_connection.connect() as connection:  # the same connection, from the pool
        await connection.execute(text("INSERT INTO probe VALUES (2)"))
        await connection.rollback()
        kept = (await connection.execute(text("SELECT array_agg(n) FROM probe"))).scalar_one()
    assert kept == [1]


async def test_behind_a_pooler_statements_keep_their_transaction(
    settings: Settings, one_connection: AsyncEngine
) -> None:
    # The statement timeout is then set per transaction, so there must be one.
    pooled = msgspec.structs.replace(settings.database, pooler="pgbouncer")
    assert autocommit_engine(one_connection, pooled) is one_connection
