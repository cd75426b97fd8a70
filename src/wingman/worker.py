"""SAQ workers: which functions each queue runs and what every job finds in its context.

Producers (web handlers, jobs that enqueue) use :mod:`wingman.queues`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from saq import Worker
from saq.job import CronJob
from saq.types import Context, PartialTimersDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wingman.config import QUEUE_NAMES, QueueName, Settings
from wingman.domain.accounts.jobs import deliver_otp
from wingman.domain.admin.queues import keep_failed
from wingman.domain.ai.jobs import ReplyRuntime, generate_reply, reconcile_cron, reconcile_replies
from wingman.domain.catalog.cache import (
    CatalogCache,
    start_invalidation_listener,
    stop_invalidation_listener,
)
from wingman.domain.imports.jobs import (
    import_transcript,
    reconcile_imports,
    reconcile_imports_cron,
)
from wingman.domain.privacy.jobs import (
    export_account,
    privacy_sweep_cron,
    purge_account,
)
from wingman.domain.realtime.events import EventBus, event_bus
from wingman.domain.retention.sweep import retention_cron, retention_sweep
from wingman.job_recovery import RecoveringQueue, with_heartbeat
from wingman.queues import create_queue
from wingman.server.database import create_engine, session_maker
from wingman.server.heap import freeze_startup_heap
from wingman.server.metrics import mark_process_dead, observe_job
from wingman.server.metrics_hooks import time_redis, watch_pool
from wingman.server.redis import RedisClients

log = structlog.get_logger(__name__)

JobFunction = Callable[..., Awaitable[Any]]


class WorkerContext(Context, total=False):
    """What every job finds in its context: set up once per worker process in ``startup``."""

    settings: Settings
    queue_name: QueueName
    db_engine: AsyncEngine
    db_sessions: async_sessionmaker[AsyncSession]
    # Tones and config, dropped when any process announces a change (domain/catalog/cache.py).
    catalog: CatalogCache
    redis: RedisClients
    catalog_listener: asyncio.Task[None]
    # Publishes the user's realtime events (message deltas, completions).
    events: EventBus
    # Queue ``ai``: its providers, running generations and cancel listener.
    replies: ReplyRuntime
    # Queue ``default``: where the reconciler enqueues replies.
    reply_queue: RecoveringQueue
    # perf_counter() when the current job's attempt started (job duration metric).
    job_started: float


async def ping(ctx: WorkerContext, *, echo: str = "") -> dict[str, Any]:
    """Health task: proves that a worker of this queue runs and reaches PostgreSQL."""
    async with ctx["db_sessions"]() as session:
        database = (await session.execute(text("SELECT 'ok'"))).scalar_one()
    return {
        "echo": echo,
        "queue": ctx["queue_name"],
        "database": database,
        "worker_pid": os.getpid(),
    }


# Which functions each queue's workers run. Areas add their jobs here.
QUEUE_FUNCTIONS: dict[QueueName, list[JobFunction]] = {
    "ai": [ping, generate_reply],
    "default": [ping, deliver_otp, reconcile_replies],
    "heavy": [
        ping,
        import_transcript,
        reconcile_imports,
        retention_sweep,
        export_account,
        purge_account,
    ],
}


def _no_cron(settings: Settings) -> list[CronJob[Any]]:
    return []


# Periodic jobs per queue; SAQ makes each one unique per tick across that queue's workers.
CRON_JOBS: dict[QueueName, Callable[[Settings], list[CronJob[Any]]]] = {
    "ai": _no_cron,
    "default": lambda settings: [reconcile_cron(settings)],
    "heavy": lambda settings: [
        reconcile_imports_cron(settings),
        retention_cron(settings),
        privacy_sweep_cron(settings),
    ],
}


class QueueWorker(Worker[WorkerContext]):
    """SAQ's worker, stopping without waiting on its upkeep loops.

    ``stop`` waits for *every* task, including upkeep loops that sleep up to 60 s between
    sweeps, so an idle worker took the whole grace period to exit. Upkeep is cancelled first
    here; only running jobs get the grace period.

    Nothing runs before the slots start taking jobs: the sweep for a dead worker's jobs is SAQ's
    upkeep loop calling :meth:`RecoveringQueue.sweep` in the background (a sweep in start-up
    held a restarted worker's slots for ~5 s per orphaned job).
    """

    _upkeep_tasks: list[asyncio.Task[None]]

    async def upkeep(self) -> list[asyncio.Task[None]]:
        self._upkeep_tasks = await super().upkeep()
        return self._upkeep_tasks

    async def stop(self) -> None:
        for task in getattr(self, "_upkeep_tasks", []):
            task.cancel()
        await super().stop()


def create_worker(settings: Settings, name: QueueName) -> QueueWorker:
    """A worker for queue ``name`` that owns its database engine (opened at start-up)."""
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}")
    queue = create_queue(settings, name)

    async def startup(ctx: WorkerContext) -> None:
        engine = create_engine(settings.database, application_name=f"wingman-worker-{name}")
        ctx["settings"] = settings
        ctx["queue_name"] = name
        ctx["db_engine"] = engine
        ctx["db_sessions"] = session_maker(engine)
        ctx["redis"] = RedisClients.from_settings(settings.redis, process=f"worker-{name}")
        watch_pool(engine)
        time_redis(ctx["redis"])
        ctx["events"] = event_bus(settings, ctx["redis"])
        ctx["catalog"] = CatalogCache()
        ctx["catalog_listener"] = start_invalidation_listener(ctx["redis"].queue, ctx["catalog"])
        if name == "ai":
            ctx["replies"] = ReplyRuntime.start(ctx)
        if name == "default":
            ctx["reply_queue"] = create_queue(settings, "ai")
        log.info("worker_started", queue=name, concurrency=settings.worker.queue(name).concurrency)

    async def shutdown(ctx: WorkerContext) -> None:
        replies = ctx.get("replies")
        if replies is not None:
            await replies.stop()
        reply_queue = ctx.get("reply_queue")
        if reply_queue is not None:
            await reply_queue.disconnect()
        engine = ctx.get("db_engine")
        if engine is not None:
            await engine.dispose()
        listener = ctx.get("catalog_listener")
        if listener is not None:
            await stop_invalidation_listener(listener)
        redis = ctx.get("redis")
        if redis is not None:
            await redis.close()
        mark_process_dead()
        log.info("worker_stopped", queue=name)

    async def before_process(ctx: WorkerContext) -> None:
        job = ctx.get("job")
        ctx["job_started"] = time.perf_counter()
        structlog.contextvars.bind_contextvars(
            job_id=getattr(job, "id", None), job_function=getattr(job, "function", None)
        )

    async def after_process(ctx: WorkerContext) -> None:
        job, started = ctx.get("job"), ctx.get("job_started")
        if job is not None and started is not None:
            status = getattr(job.status, "value", str(job.status))
            observe_job(name, job.function, status, time.perf_counter() - started)
            # For the admin's queue view: SAQ's 10-minute record TTL would hide it too soon.
            await keep_failed(queue, job)
        structlog.contextvars.unbind_contextvars("job_id", "job_function")

    return QueueWorker(
        queue,
        functions=[with_heartbeat(function) for function in QUEUE_FUNCTIONS[name]],
        cron_jobs=[
            dataclasses.replace(cron, function=with_heartbeat(cron.function))
            for cron in CRON_JOBS[name](settings)
        ],
        concurrency=settings.worker.queue(name).concurrency,
        startup=startup,
        shutdown=shutdown,
        before_process=before_process,
        after_process=after_process,
        shutdown_grace_period_s=settings.worker.shutdown_grace,
        # Idle slots block on Redis; a bounded wait lets them see a stop request within a second
        # instead of holding shutdown for the whole grace period.
        dequeue_timeout=1.0,
        # How often the active list is swept for a dead worker's jobs (SAQ's default is 60 s); a
        # worker stops reporting in (``worker_info``, TTL 11 s) and its jobs' heartbeats stop
        # when it is killed, so its jobs run again within about 15 s + this (job_recovery.py).
        # SAQ's type wants every timer; the others keep SAQ's defaults, which job_recovery's
        # constants assume.
        timers=PartialTimersDict(
            schedule=1, worker_info=10, sweep=settings.worker.sweep_seconds, abort=1
        ),
    )


def serve_worker(settings: Settings, name: QueueName) -> QueueWorker:
    """The worker as the ``wingman worker`` process runs it: :func:`create_worker`, and once it
    has started, everything alive is frozen out of the garbage collector's scans
    (:mod:`wingman.server.heap`)."""
    worker = create_worker(settings, name)

    async def freeze_heap(_ctx: WorkerContext) -> None:
        freeze_startup_heap()

    worker.startup = [*(worker.startup or ()), freeze_heap]
    return worker
