"""Client CPU per hot statement: SQLAlchemy's execution against the driver's (benchmark).

Starts a private PostgreSQL with the schema, stores a session of 40 messages, and reads its
newest page of 20 (the message page's own statement, ``_MESSAGE_PAGE`` in
``domain/chat/services.py``) over the autocommit engine, as the web does, four ways in
alternating rounds, each a whole use: take a connection, run, give it back.

- ``session + SQLAlchemy``: an ORM session, ``Session.execute`` (the code before db/direct.py).
- ``session + direct``: an ORM session, the statement run by the driver (db/direct.py).
- ``connection + direct``: an engine connection, the statement run by the driver (the web's
  reads and one-statement writes now).
- ``connection + psycopg``: an engine connection, the compiled SQL on psycopg with nothing else
  (no type processing, no rows built): what the stack allows.

The figure is this process's CPU time per use (``time.process_time``: waiting for PostgreSQL is
not counted); the median round is reported.

Prints the figures and writes bench/results/<date>-statement.{json,md}.

    .venv/bin/python scripts/bench_statement.py [--uses 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import psycopg
from benchkit import Services, private_services, seed_user, write_results
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from uuid_utils.compat import uuid7

from wingman.db.models import ChatSession, Message, MessageSender, ProcessingStatus
from wingman.domain.chat.services import _MESSAGE_PAGE
from wingman.server.database import autocommit_engine, create_engine

Use = Callable[[], Awaitable[list[tuple[Any, ...]]]]
MESSAGES = 40
PAGE = 20


async def store_session(engine: AsyncEngine, user_id: UUID) -> UUID:
    session_id = UUID(str(uuid7()))
    start = datetime.now(UTC)
    async with engine.begin() as connection:
        await connection.execute(
            insert(ChatSession), {"id": session_id, "user_id": user_id, "title": "bench"}
        )
        await connection.execute(
            insert(Message),
            [
                {
                    "id": UUID(str(uuid7())),
                    "session_id": session_id,
                    "sender": MessageSender.USER if n % 2 else MessageSender.AI,
                    "content": f"message {n} " + "words " * 20,
                    "processing_status": ProcessingStatus.DONE,
                    "created_at": start + timedelta(milliseconds=n),
                }
                for n in range(MESSAGES)
            ],
        )
    return session_id


async def cpu_per_use(use: Use, uses: int) -> float:
    """Microseconds of this process's CPU per use."""
    start = time.process_time()
    for _ in range(uses):
        await use()
    return (time.process_time() - start) / uses * 1e6


async def measure(services: Services, uses: int, rounds: int) -> dict[str, float]:
    user_id = seed_user(services.database_url)
    engine = create_engine(services.settings.database, "wingman-bench")
    reads = autocommit_engine(engine, services.settings.database)
    session_id = await store_session(engine, user_id)
    params = {"session_id": session_id, "user_id": user_id, "limit": PAGE + 1}
    statement = _MESSAGE_PAGE.statement

    async def session_sqlalchemy() -> list[tuple[Any, ...]]:
        async with AsyncSession(reads) as db:
            rows = (await db.execute(statement, params)).all()
            await db.commit()
        return [tuple(row) for row in rows]

    async def session_direct() -> list[tuple[Any, ...]]:
        async with AsyncSession(reads) as db:
            rows = await _MESSAGE_PAGE.rows(db, params)
            await db.commit()
        return [tuple(row) for row in rows]

    async def connection_direct() -> list[tuple[Any, ...]]:
        async with reads.connect() as connection:
            rows = await _MESSAGE_PAGE.rows(connection, params)
            await connection.commit()
        return [tuple(row) for row in rows]

    sql = _MESSAGE_PAGE.sql(reads.dialect)
    values = {**params, "session_id": str(session_id), "user_id": str(user_id)}

    async def connection_psycopg() -> list[tuple[Any, ...]]:
        async with reads.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = cast("psycopg.AsyncConnection[Any]", raw.driver_connection)
            cursor = driver.cursor()
            await cursor.execute(sql, values)
            return await cursor.fetchall()

    ways: dict[str, Use] = {
        "session + SQLAlchemy": session_sqlalchemy,
        "session + direct": session_direct,
        "connection + direct": connection_direct,
        "connection + psycopg": connection_psycopg,
    }
    try:
        expected = await session_sqlalchemy()
        if len(expected) != PAGE + 1:
            raise SystemExit(f"the page has {len(expected)} rows, not {PAGE + 1}")
        for name in ("session + direct", "connection + direct"):
            if await ways[name]() != expected:
                raise SystemExit(f"{name} read other rows than SQLAlchemy")
        figures: dict[str, list[float]] = {name: [] for name in ways}
        for use in ways.values():
            await cpu_per_use(use, 200)
        for _ in range(rounds):
            for name, use in ways.items():
                figures[name].append(await cpu_per_use(use, uses))
    finally:
        await engine.dispose()
    return {name: round(statistics.median(values), 1) for name, values in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uses", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with private_services("statement", pool={"pool_size": 2}) as services:
        results = asyncio.run(measure(services, args.uses, args.rounds))
    base = results["session + SQLAlchemy"]
    body = [
        f"Client CPU per use: a connection taken, a message page of {PAGE} rows (of"
        f" {MESSAGES}) read, the connection given back; median of {args.rounds} alternating"
        f" rounds of {args.uses} uses, {os.cpu_count()} cores.",
        "",
        "| way | CPU per use | against session + SQLAlchemy |",
        "| --- | ---: | ---: |",
    ]
    for name, value in results.items():
        body.append(f"| {name} | {value:.0f} µs | {value / base:.2f} |")
    fields = {"uses_per_round": args.uses, "rounds": args.rounds, "cpu_us_per_use": results}
    write_results("statement", fields, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
