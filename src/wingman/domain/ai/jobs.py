"""The AI queues' jobs: ``generate_reply`` (queue ``ai``) and the ``reconcile_replies`` cron
(queue ``default``), with the per-process runtime they share.

PostgreSQL is the source of truth for what is owed: the reconciler looks for AI messages still
``queued`` or ``processing`` that nobody has touched for ``ai.stale_after_seconds`` and, when
SAQ holds no live job for them (the queue was lost, a worker died past its retries, the enqueue
after commit failed), enqueues one. The job itself decides between running and giving up (the
attempt budget), so there is one place that fails a message for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog
from redis.exceptions import RedisError
from saq.job import CronJob
from sqlalchemy import select

from wingman.config import Settings
from wingman.db.models import IN_FLIGHT_STATUSES, Message, MessageSender, utcnow
from wingman.domain.ai.cancel import RunningReplies
from wingman.domain.ai.generation import Providers, ReplyDeps, ReplyRun
from wingman.domain.ai.offline import OfflineProvider
from wingman.domain.ai.openai import OpenAICompatibleProvider
from wingman.domain.chat.replies import enqueue_reply, reply_job_key
from wingman.server.cache import invalidate_user
from wingman.server.database import autocommit_engine, session_maker
from wingman.server.redis_mux import RedisMux

if TYPE_CHECKING:
    from wingman.worker import WorkerContext

log = structlog.get_logger(__name__)

# In-flight messages looked at per reconciler round (oldest first); the rest wait a round.
RECONCILE_BATCH = 500


async def generate_reply(ctx: WorkerContext, *, message_id: str) -> dict[str, Any]:
    """Run the reply for AI message ``message_id`` (see ``domain/ai/generation.py``)."""
    runtime = ctx["replies"]
    target = UUID(message_id)
    task: asyncio.Task[dict[str, Any]] = asyncio.create_task(
        ReplyRun(runtime.deps, target).execute()
    )
    with runtime.running.running(target, task):
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            # Our own cancellation (the user cancelled; the row already says so) ends the job;
            # SAQ's (timeout, shutdown) propagates so that SAQ retries the job.
            if runtime.running.was_cancelled(target) and current and not current.cancelling():
                return {"message_id": message_id, "outcome": "cancelled"}
            raise


async def reconcile_replies(ctx: WorkerContext) -> dict[str, int]:
    """Enqueue a job for every stale in-flight AI message that has no live one."""
    settings = ctx["settings"]
    queue = ctx["reply_queue"]
    cutoff = utcnow() - timedelta(seconds=settings.ai.stale_after_seconds)
    async with ctx["db_sessions"]() as db:
        stale = (
            await db.scalars(
                select(Message.id)
                .where(
                    Message.sender == MessageSender.AI,
                    Message.processing_status.in_(IN_FLIGHT_STATUSES),
                    Message.updated_at < cutoff,
                )
                .order_by(Message.updated_at)
                .limit(RECONCILE_BATCH)
            )
        ).all()
    counts = {"stale": len(stale), "live": 0, "enqueued": 0, "held": 0}
    for message_id in stale:
        if await queue.is_live(await queue.job(reply_job_key(message_id))):
            counts["live"] += 1
        elif await enqueue_reply(queue, settings, message_id):
            counts["enqueued"] += 1
        else:
            # A dead job still in SAQ's lists (the ``ai`` workers' sweep puts it back), or one
            # aborted in the last few seconds (SAQ refuses its key meanwhile): next round.
            counts["held"] += 1
    if counts["enqueued"] or counts["held"]:
        log.warning("replies_reenqueued", **counts)
    return counts


def reconcile_cron(settings: Settings) -> CronJob[Any]:
    step = settings.ai.reconcile_every_seconds
    # croniter's sixth field is seconds.
    return CronJob(reconcile_replies, cron=f"* * * * * */{step}", timeout=max(step, 10))


class ReplyRuntime:
    """An ``ai`` worker process's providers, running generations and cancel listener."""

    def __init__(self, deps: ReplyDeps, running: RunningReplies, listener: asyncio.Task[None]):
        self.deps = deps
        self.running = running
        self._listener = listener

    @classmethod
    def start(cls, ctx: WorkerContext) -> ReplyRuntime:
        settings = ctx["settings"]
        openai = (
            OpenAICompatibleProvider(
                settings.ai.openai, max_connections=settings.worker.queue("ai").concurrency
            )
            if settings.ai.openai.base_url
            else None
        )
        deps = ReplyDeps(
            settings=settings.ai,
            db_sessions=ctx["db_sessions"],
            autocommit_sessions=session_maker(
                autocommit_engine(ctx["db_engine"], settings.database)
            ),
            catalog=ctx["catalog"],
            events=ctx["events"],
            providers=Providers(OfflineProvider(settings.ai.offline.token_interval_ms), openai),
            on_change=functools.partial(_invalidate_reads, ctx["redis"].queue_mux),
        )
        running = RunningReplies()
        listener = asyncio.create_task(running.listen(ctx["redis"].queue), name="cancel-listener")
        return cls(deps, running, listener)

    async def stop(self) -> None:
        self._listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._listener
        await self.deps.providers.offline.close()
        if self.deps.providers.openai is not None:
            await self.deps.providers.openai.close()


async def _invalidate_reads(redis_queue: RedisMux, user_id: UUID) -> None:
    """Drop the user's cached reads (session detail shows the reply's state)."""
    try:
        await invalidate_user(redis_queue, user_id)
    except RedisError as exc:
        # The reply is stored; the user's cached reads show the old state until their TTL.
        log.warning("cache_invalidation_failed", user_id=str(user_id), error=type(exc).__name__)
