"""Readiness checks: PostgreSQL answers, both Redis roles answer, migrations are at head."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Literal

import msgspec
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from wingman.db.migrations import current_revision

CheckStatus = Literal["ok", "fail"]
CHECK_TIMEOUT = 3.0


class CheckResult(msgspec.Struct):
    status: CheckStatus
    latency_ms: float
    error: str | None = None


class Readiness(msgspec.Struct):
    status: CheckStatus
    checks: dict[str, CheckResult]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


async def _timed(check: Awaitable[str | None]) -> CheckResult:
    """Run one check with a deadline; a problem becomes a short message, never a traceback."""
    started = time.perf_counter()
    try:
        problem = await asyncio.wait_for(check, CHECK_TIMEOUT)
    except TimeoutError:
        problem = f"no answer within {CHECK_TIMEOUT:.0f} s"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "failed"
        problem = f"{type(exc).__name__}: {first_line}"
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    return CheckResult("fail" if problem else "ok", elapsed, problem)


async def _database(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return None


async def _migrations(engine: AsyncEngine, head: str) -> str | None:
    async with engine.connect() as conn:
        current = await current_revision(conn)
    if current != head:
        return f"database at {current or 'no revision'}, code expects {head}"
    return None


async def _redis(client: Redis) -> str | None:
    await client.ping()
    return None


async def readiness(engine: AsyncEngine, queue: Redis, cache: Redis, head: str) -> Readiness:
    names = ["database", "migrations", "redis_queue", "redis_cache"]
    results = await asyncio.gather(
        _timed(_database(engine)),
        _timed(_migrations(engine, head)),
        _timed(_redis(queue)),
        _timed(_redis(cache)),
    )
    checks = dict(zip(names, results, strict=True))
    if checks["database"].status == "fail" and checks["migrations"].status == "fail":
        # Without a database the migration check cannot say anything of its own.
        checks["migrations"] = CheckResult(
            "fail", checks["migrations"].latency_ms, "database unavailable"
        )
    status: CheckStatus = "ok" if all(c.status == "ok" for c in results) else "fail"
    return Readiness(status=status, checks=checks)
