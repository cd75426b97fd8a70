"""What PostgreSQL says about one backend (a server process serving one connection), asked on
another connection: for tests of what a pooled connection sent, and of its end."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def backend_query(engine: AsyncEngine, pid: int) -> tuple[str, str]:
    """What PostgreSQL says backend ``pid`` last ran, and its state, asked on another connection."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT query, state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
        ).one()
    return row.query, row.state


async def backend_gone(engine: AsyncEngine, pid: int) -> bool:
    async with engine.connect() as connection:
        found = await connection.execute(
            text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
        return found.first() is None
