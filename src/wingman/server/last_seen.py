"""``users.last_seen_at``: noted in memory as signed-in requests arrive, written in batches.

A request notes its caller at most once per :data:`LAST_SEEN_INTERVAL` per web process, with a
dictionary lookup and nothing to wait for; a background task writes what was noted every
:data:`FLUSH_SECONDS` in one ``UPDATE`` (:meth:`LastSeenTracker.run`), and once more when the
process stops. Before, each noted request waited on a Redis ``SET NX`` (the gate shared by the
processes) and then on its own ``UPDATE``: two waits in the request path for every active user
once a minute, the costliest kind of work for a mostly idle process (docs/performance.md, eighth
round). Without the shared gate, a user served by several processes within a minute is written
by each of them, in their batches: at most one row write per process per user-minute.

What the field shows:

- ``GET /api/v1/me`` answers with the caller's own noted time when it is newer than the row's
  (:meth:`LastSeenTracker.noted`): a user sees their own activity at once.
- Every other reader (the admin API, ``wingmanctl users``) sees the row: up to a minute old, as
  before, plus at most :data:`FLUSH_SECONDS` until the batch is written.
- A batch that cannot be written (the database restarting) is kept for the next one, newer notes
  winning; a process killed with ``kill -9`` loses at most its last :data:`FLUSH_SECONDS` of
  notes. The field is bookkeeping: no request ever fails or waits for it.

The write only moves the time forward (a process with an older note changes nothing), and it
leaves ``updated_at`` alone: being seen is not an edit of the account. Ids are written in order,
so two processes' batches lock shared rows in the same order and cannot deadlock each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger(__name__)

# A caller is noted at most this often per process.
LAST_SEEN_INTERVAL = 60.0
# How often a process writes what it noted.
FLUSH_SECONDS = 5.0

_WRITE = text(
    "UPDATE users SET last_seen_at = seen.at"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[])) AS seen (id, at)"
    " WHERE users.id = seen.id AND (users.last_seen_at IS NULL OR users.last_seen_at < seen.at)"
)


class LastSeenTracker:
    """One web process's notes of who was seen when, and their batched writes."""

    def __init__(self, max_entries: int = 100_000) -> None:
        # Bounds both maps: at most this many users gated, and this many notes waiting.
        self.max_entries = max_entries
        # When each user may be noted again (the monotonic clock).
        self._gate: dict[UUID, float] = {}
        # Notes not yet written, and those of the batch being written.
        self._pending: dict[UUID, datetime] = {}
        self._writing: dict[UUID, datetime] = {}

    def touch(self, user_id: UUID) -> None:
        """Note that ``user_id`` was seen now, unless noted within the interval."""
        now = time.monotonic()
        if self._gate.get(user_id, 0.0) > now:
            return
        if len(self._gate) >= self.max_entries:
            self._gate = {k: v for k, v in self._gate.items() if v > now}
        self._gate[user_id] = now + LAST_SEEN_INTERVAL
        if len(self._pending) < self.max_entries:
            self._pending[user_id] = datetime.now(UTC)

    def noted(self, user_id: UUID) -> datetime | None:
        """This process's note for ``user_id`` not yet known to be written, if any."""
        return self._pending.get(user_id) or self._writing.get(user_id)

    async def flush(self, engine: AsyncEngine) -> int:
        """Write every note in one statement; the rows it moved forward. A batch that fails is
        kept for the next flush (a newer note of the same user wins) and the error raised."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        self._writing = batch
        ids = sorted(batch)
        try:
            # One statement: on the autocommit engine ``begin`` sends nothing of its own.
            async with engine.begin() as connection:
                result = await connection.execute(
                    _WRITE, {"ids": ids, "ats": [batch[user_id] for user_id in ids]}
                )
        except BaseException:
            for user_id, seen_at in batch.items():
                if len(self._pending) >= self.max_entries:
                    break
                self._pending.setdefault(user_id, seen_at)
            raise
        finally:
            self._writing = {}
        return result.rowcount

    async def run(self, engine: AsyncEngine, every: float = FLUSH_SECONDS) -> None:
        """Flush every ``every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            await self._flush_quietly(engine)

    async def _flush_quietly(self, engine: AsyncEngine) -> None:
        try:
            await self.flush(engine)
        except (SQLAlchemyError, OSError) as exc:
            error = type(exc).__name__
            log.warning("last_seen_flush_failed", waiting=len(self._pending), error=error)

    @contextlib.asynccontextmanager
    async def flushing(self, engine: AsyncEngine) -> AsyncIterator[None]:
        """Flush in the background while the block runs, and once more when it ends."""
        task = asyncio.create_task(self.run(engine), name="last-seen-flush")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._flush_quietly(engine)
