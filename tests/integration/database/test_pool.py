"""The database pool keeps the connections it opens: a load that swings between bursts and calm
does not pay for a new PostgreSQL connection (a backend fork and SCRAM) at every swing."""

from __future__ import annotations

import asyncio

import msgspec
from sqlalchemy import event, text

from wingman.config import Settings
from wingman.server.database import create_engine


async def test_connections_opened_in_a_burst_are_kept(settings: Settings) -> None:
    db = msgspec.structs.replace(settings.database, pool_size=2, max_overflow=3)
    engine = create_engine(db, "wingman-tests")
    opened = 0

    def count(*_: object) -> None:
        nonlocal opened
        opened += 1

    event.listen(engine.sync_engine.pool, "connect", count)

    async def query() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT pg_sleep(0.005)"))

    try:
        for _ in range(15):
            await asyncio.gather(*(query() for _ in range(5)))  # a burst: all five in use
            for _ in range(3):
                await query()  # calm: one at a time, the others idle in the pool
        pool = engine.sync_engine.pool
        assert opened == 5, f"{opened} connections opened for 5 allowed"
        assert pool.checkedin() == 5  # type: ignore[attr-defined]
        # Never more than the budget at once: a sixth caller waits for a connection.
        await asyncio.gather(*(query() for _ in range(8)))
        assert opened == 5
    finally:
        await engine.dispose()
