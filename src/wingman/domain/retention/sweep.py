"""``retention_sweep``: the ``heavy`` queue's daily cron deleting rows past their horizon.

**Small batches, short transactions.** Every id is a UUIDv7, whose first 48 bits are its
creation time in milliseconds, so "created before the horizon" is a range of the primary key.
Each kind walks that range in keyset order, ``batch_size`` ids at a time, and deletes those of
them that qualify in a transaction of its own: no transaction holds more than ``batch_size`` row
locks, or lasts longer than one index range scan and one delete, whatever the table's size. Rows
that stay (a refresh token still valid) are passed over once, not re-read by every batch.

**What goes** (``retention`` config, in days ``N``):

- ``otp_requests``: requests created more than N days ago (expired or used long since);
- ``refresh_tokens``: tokens created more than N days ago that expired or were revoked more than
  N days ago;
- ``session_events``: events created more than N days ago;
- ``session_imports``: records of finished imports created more than N days ago (the messages
  they stored stay);
- ``messages`` (only with a horizon set): messages created more than N days ago; each batch
  lowers its sessions' ``message_count`` in the same transaction.

The outcome (when, rows removed per kind, batches) is kept in the queue Redis under
:data:`LAST_RUN_KEY` for ``wingmanctl status``. Export files are not this job's business.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
import structlog
from saq.job import CronJob
from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wingman.config import Settings
from wingman.db.models import (
    ChatSession,
    ImportStatus,
    Message,
    OtpRequest,
    RefreshToken,
    SessionEvent,
    SessionImport,
    utcnow,
)
from wingman.domain.catalog.registry import Retention
from wingman.domain.catalog.services import config_value

if TYPE_CHECKING:
    from wingman.worker import WorkerContext

log = structlog.get_logger(__name__)

LAST_RUN_KEY = "wingman:retention:last_run"
# Every day at 03:17 (server time), off the hour when other timers tend to fire.
DAILY = "17 3 * * *"
_LOWEST_ID = UUID(int=0)


def id_boundary(moment: datetime) -> UUID:
    """The smallest UUIDv7 of ``moment``'s millisecond: ids below it were made before it."""
    return UUID(int=int(moment.timestamp() * 1000) << 80)


@dataclass(slots=True)
class KindOutcome:
    removed: int = 0
    batches: int = 0
    # The most rows one batch looked at (never above ``batch_size``).
    largest_batch: int = 0


class SweepReport(msgspec.Struct, kw_only=True):
    started_at: datetime
    finished_at: datetime
    seconds: float
    batch_size: int
    removed: dict[str, int]
    batches: dict[str, int]
    largest_batch: dict[str, int]


@dataclass(slots=True)
class Kind:
    """One table's rule: the model, its horizon in days, and which old rows qualify."""

    name: str
    model: Any
    days: int | None
    condition: Callable[[datetime], ColumnElement[bool]] | None = None
    outcome: KindOutcome = field(default_factory=KindOutcome)


def kinds(config: Retention) -> list[Kind]:
    return [
        Kind("otp_requests", OtpRequest, config.otp_requests_days),
        Kind(
            "refresh_tokens",
            RefreshToken,
            config.refresh_tokens_days,
            lambda cutoff: or_(RefreshToken.expires_at < cutoff, RefreshToken.revoked_at < cutoff),
        ),
        Kind("session_events", SessionEvent, config.session_events_days),
        Kind(
            "session_imports",
            SessionImport,
            config.session_imports_days,
            lambda cutoff: SessionImport.status != ImportStatus.QUEUED,
        ),
        Kind(
            "messages",
            Message,
            config.messages_days,
            lambda cutoff: Message.created_at < cutoff,
        ),
    ]


async def _delete_batch(db: AsyncSession, kind: Kind, ids: list[UUID], cutoff: datetime) -> int:
    table = kind.model
    where = [table.id.in_(ids)]
    if kind.condition is not None:
        where.append(kind.condition(cutoff))
    if table is not Message:
        result = await db.execute(delete(table).where(and_(*where)).returning(table.id))
        return len(result.all())
    gone = (await db.execute(delete(Message).where(*where).returning(Message.session_id))).all()
    for session_id, count in Counter(row.session_id for row in gone).items():
        await db.execute(
            update(ChatSession)
            .where(ChatSession.id == session_id)
            .values(message_count=ChatSession.message_count - count)
            .execution_options(synchronize_session=False)
        )
    return len(gone)


async def sweep_kind(
    sessions: async_sessionmaker[AsyncSession], kind: Kind, batch_size: int, now: datetime
) -> KindOutcome:
    """Delete ``kind``'s rows past its horizon, ``batch_size`` ids per transaction."""
    outcome = kind.outcome
    if kind.days is None:
        return outcome
    cutoff = now - timedelta(days=kind.days)
    boundary = id_boundary(cutoff)
    last = _LOWEST_ID
    while True:
        async with sessions() as db, db.begin():
            ids = list(
                (
                    await db.scalars(
                        select(kind.model.id)
                        .where(kind.model.id > last, kind.model.id < boundary)
                        .order_by(kind.model.id)
                        .limit(batch_size)
                    )
                ).all()
            )
            if not ids:
                return outcome
            outcome.removed += await _delete_batch(db, kind, ids, cutoff)
        outcome.batches += 1
        outcome.largest_batch = max(outcome.largest_batch, len(ids))
        last = ids[-1]


async def retention_sweep(ctx: WorkerContext) -> dict[str, Any]:
    """Delete every kind's rows past its horizon; record the outcome for ``wingmanctl status``."""
    sessions = ctx["db_sessions"]
    async with sessions() as db:
        config = await config_value(ctx["catalog"], db, "retention", Retention)
    started, clock = utcnow(), time.perf_counter()
    done = kinds(config)
    for kind in done:
        await sweep_kind(sessions, kind, config.batch_size, started)
    report = SweepReport(
        started_at=started,
        finished_at=utcnow(),
        seconds=round(time.perf_counter() - clock, 3),
        batch_size=config.batch_size,
        removed={kind.name: kind.outcome.removed for kind in done},
        batches={kind.name: kind.outcome.batches for kind in done},
        largest_batch={kind.name: kind.outcome.largest_batch for kind in done},
    )
    await ctx["redis"].queue.set(LAST_RUN_KEY, msgspec.json.encode(report))
    log.info("retention_swept", removed=report.removed, seconds=report.seconds)
    result: dict[str, Any] = msgspec.to_builtins(report)
    return result


def retention_cron(settings: Settings) -> CronJob[Any]:
    # Unique per tick across the heavy workers (SAQ's cron key); the heavy timeout bounds it.
    return CronJob(retention_sweep, cron=DAILY, timeout=settings.worker.queue("heavy").timeout)
