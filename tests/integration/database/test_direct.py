"""Statements the driver runs (db/direct.py): the values, transaction, errors and events are the
ones SQLAlchemy's own execution gives, on a real PostgreSQL."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, event, insert, select
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from wingman.config import Settings
from wingman.db.direct import DirectStatement
from wingman.db.models import EnumString, MessageSender
from wingman.server.database import create_engine, database_unreachable

_PROBES = Table(
    "direct_probes",
    MetaData(),
    Column("id", GUID, primary_key=True),
    Column("sender", EnumString(MessageSender)),
    Column("at", DateTimeUTC(timezone=True)),
    Column("payload", JSONB),
    Column("n", Integer),
)
_ADD = DirectStatement(
    insert(_PROBES)
    .values(
        id=bindparam("id"),
        sender=bindparam("sender"),
        at=bindparam("at"),
        payload=bindparam("payload"),
        n=7,
    )
    .returning(*_PROBES.c)
)
_ALL = select(*_PROBES.c).order_by(_PROBES.c.n, _PROBES.c.id)


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A pool of one connection, and the probe table, dropped after the test (a real table, not
    a temporary one: some tests read it through a second engine)."""
    engine = create_engine(msgspec.structs.replace(settings.database, pool_size=1), "wingman-tests")
    async with engine.begin() as connection:
        await connection.run_sync(_PROBES.create)
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(_PROBES.drop)
        await engine.dispose()


async def _through_sqlalchemy(connection: AsyncConnection) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in (await connection.execute(_ALL)).all()]


async def test_values_go_in_and_come_out_as_through_sqlalchemy(
    one_connection: AsyncEngine,
) -> None:
    pending = datetime(2026, 12, 8, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    async with one_connection.begin() as connection:
        added = await _ADD.first(
            connection,
            {"id": uuid.uuid4(), "sender": "ai", "at": pending, "payload": {"rating": [1, "x"]}},
        )
        await connection.execute(
            insert(_PROBES),
            {"id": uuid.uuid4(), "sender": "user", "at": pending, "payload": None, "n": 9},
        )
        direct = await DirectStatement(_ALL).rows(connection, {})
        expected = await _through_sqlalchemy(connection)
    assert added is not None
    assert added.at == pending
    assert added.at.tzinfo is UTC
    assert added.payload == {"rating": [1, "x"]}
    assert added.n == 7
    assert [tuple(row) for row in direct] == expected
    # The enum column holds the members, not their text.
    assert [row.sender for row in direct] == [MessageSender.AI, MessageSender.USER]
    assert all(type(row.sender) is MessageSender for row in direct)


async def test_it_runs_in_the_sessions_transaction(one_connection: AsyncEngine) -> None:
    row = {"id": uuid.uuid4(), "sender": "user", "at": datetime.now(UTC), "payload": {}}
    async with AsyncSession(one_connection) as session:
        await _ADD.rows(session, row)
        await session.rollback()
        assert await DirectStatement(_ALL).rows(session, {}) == []
        await _ADD.rows(session, row)
        await session.commit()
    async with one_connection.connect() as connection:
        assert [r[0] for r in await _through_sqlalchemy(connection)] == [row["id"]]


async def test_a_refused_statement_raises_as_sqlalchemy_does(one_connection: AsyncEngine) -> None:
    secret = {"words": "secret words"}
    row = {"id": uuid.uuid4(), "sender": "user", "at": datetime.now(UTC), "payload": secret}
    async with one_connection.connect() as connection:
        await _ADD.rows(connection, row)
        with pytest.raises(IntegrityError) as raised:
            await _ADD.rows(connection, row)
    assert raised.value.orig is not None
    assert type(raised.value.orig).__name__ == "UniqueViolation"
    assert "secret words" not in str(raised.value)  # parameters are never in the message
    assert not database_unreachable(raised.value)


async def test_a_lost_connection_is_invalidated_and_reads_as_unreachable(
    one_connection: AsyncEngine, engine: AsyncEngine
) -> None:
    async with one_connection.connect() as connection:
        pid = (await connection.execute(sql_text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as other:
            await other.execute(sql_text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as raised:
            await DirectStatement(_ALL).rows(connection, {})
        assert connection.invalidated
    assert raised.value.connection_invalidated
    assert database_unreachable(raised.value)
    # The pool replaced the connection: the next use works.
    async with one_connection.connect() as connection:
        assert await DirectStatement(_ALL).rows(connection, {}) == []


async def test_the_engines_statement_listeners_see_it(one_connection: AsyncEngine) -> None:
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sync_engine = one_connection.sync_engine
    event.listen(sync_engine, "before_cursor_execute", listener)
    try:
        async with one_connection.connect() as connection:
            await DirectStatement(_ALL).rows(connection, {})
    finally:
        event.remove(sync_engine, "before_cursor_execute", listener)
    assert any(statement.startswith("SELECT direct_probes.id") for statement in seen), seen


async def test_a_statement_needing_sql_per_execution_is_refused(engine: AsyncEngine) -> None:
    statement = DirectStatement(select(_PROBES.c.id).where(_PROBES.c.n.in_([1, 2])))
    async with engine.connect() as connection:
        with pytest.raises(ValueError, match="fixed SQL"):
            await statement.rows(connection, {})


async def test_a_write_on_a_fresh_connection_is_committed_by_its_commit(
    one_connection: AsyncEngine,
) -> None:
    # Nothing has begun the connection's transaction: the statement begins it, as SQLAlchemy's
    # own execution would, so commit() commits it rather than finding nothing to do.
    row = {"id": uuid.uuid4(), "sender": "ai", "at": datetime.now(UTC), "payload": {}}
    async with one_connection.connect() as connection:
        await _ADD.rows(connection, row)
        await connection.commit()
    async with one_connection.connect() as connection:
        assert [r[0] for r in await _through_sqlalchemy(connection)] == [row["id"]]


async def test_database_echo_logs_the_sql_without_its_values(
    settings: Settings, one_connection: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    # one_connection made the table; another engine, echoing, reads it.
    echoing = create_engine(msgspec.structs.replace(settings.database, echo=True), "wingman-tests")
    statement = DirectStatement(select(_PROBES.c.id).where(_PROBES.c.n == bindparam("n")))
    try:
        with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
            async with echoing.connect() as connection:
                await statement.rows(connection, {"n": 424242})
    finally:
        await echoing.dispose()
    logged = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("SELECT direct_probes.id") for message in logged), logged
    assert not any("424242" in message for message in logged)
