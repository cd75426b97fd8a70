"""The database pool keeps the connections it opens: a load that swings between bursts and calm
does not pay for a new PostgreSQL connection (a backend fork and SCRAM) at every swing. Handing
one out costs no round trip, yet one the server has closed is replaced, not handed out."""

from __future__ import annotations

import asyncio

import msgspec
from sqlalchemy import event, text

from tests.support.backends import backend_gone, backend_query
from tests.support.polling import eventually
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


async def test_checkout_makes_no_round_trip(settings: Settings) -> None:
    db = msgspec.structs.replace(settings.database, pool_size=1)
    engine, observer = create_engine(db, "wingman-tests"), create_engine(db, "wingman-tests")
    try:
        async with engine.connect() as connection:
            pid = (await connection.execute(text("SELECT pg_backend_pid() AS pid"))).scalar_one()
        async with engine.connect() as connection:
            # Checked out again: nothing reached the server since the last use ended (a pre-ping
            # would be the last statement now).
            last, state = await backend_query(observer, pid)
            assert (last, state) == ("ROLLBACK", "idle")
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
        await observer.dispose()


async def test_a_connection_the_server_closed_is_replaced_at_checkout(settings: Settings) -> None:
    db = msgspec.structs.replace(settings.database, pool_size=1)
    engine, admin = create_engine(db, "wingman-tests"), create_engine(db, "wingman-tests")
    replaced = 0

    def count(*_: object) -> None:
        nonlocal replaced
        replaced += 1

    try:
        async with engine.connect() as connection:
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        event.listen(engine.sync_engine.pool, "connect", count)
        async with admin.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # The backend's goodbye reaches the idle pooled socket shortly after.
        await eventually(lambda: backend_gone(admin, pid), 10, "the backend to exit")
        async with engine.connect() as connection:
            # No error: the dead connection was found at checkout and a new one opened.
            new_pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert new_pid != pid
        assert replaced == 1
    finally:
        await engine.dispose()
        await admin.dispose()
