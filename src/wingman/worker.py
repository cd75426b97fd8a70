"""SAQ queues and workers: one definition of each queue, its functions and its job settings.

SAQ's defaults (10 s timeout, 1 retry, no heartbeat) would silently drop a crashed worker's job,
so every job is enqueued through :func:`enqueue`, which applies the queue's timeout, heartbeat,
retries and backoff from the settings.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from saq import Queue, Worker
from saq.types import Context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wingman.config import QUEUE_NAMES, QueueName, Settings
from wingman.domain.accounts.jobs import deliver_otp
from wingman.domain.catalog.cache import (
    CatalogCache,
    start_invalidation_listener,
    stop_invalidation_listener,
)
from wingman.domain.realtime.events import EventBus, event_bus
from wingman.server.database import create_engine, session_maker
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


def create_queue(settings: Settings, name: QueueName) -> Queue:
    """The SAQ queue ``name`` on the queue-role Redis."""
    return Queue.from_url(settings.redis.queue_url, name=name)


def job_options(settings: Settings, name: QueueName) -> dict[str, Any]:
    queue = settings.worker.queue(name)
    return {
        "timeout": queue.timeout,
        "heartbeat": queue.heartbeat,
        "retries": queue.retries,
        "retry_delay": queue.retry_delay,
        "retry_backoff": queue.retry_backoff,
    }


async def enqueue(
    queue: Queue, settings: Settings, function: str, *, key: str | None = None, **kwargs: Any
) -> Any:
    """Enqueue ``function`` with the queue's job settings; a repeated ``key`` collapses."""
    options = job_options(settings, queue.name)  # type: ignore[arg-type]
    if key is not None:
        options["key"] = key
    return await queue.enqueue(function, **options, **kwargs)


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
    "ai": [ping],
    "default": [ping, deliver_otp],
    "heavy": [ping],
}


class QueueWorker(Worker[WorkerContext]):
    """SAQ's worker with two start/stop fixes.

    - ``stop`` waits for *every* task, including upkeep loops that sleep up to 60 s between
      sweeps, so an idle worker took the whole grace period to exit. Upkeep is cancelled first
      here; only running jobs get the grace period.
    - The first sweep ran concurrently with the first dequeue and could mistake a job that was
      just moved to the active list (not yet marked active) for a stuck one. Sweeping once in
      start-up, before any slot dequeues, takes the sweep lock for the first interval.
    """

    _upkeep_tasks: list[asyncio.Task[None]]

    async def upkeep(self) -> list[asyncio.Task[None]]:
        await self.queue.sweep()
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
        ctx["events"] = event_bus(settings, ctx["redis"])
        ctx["catalog"] = CatalogCache()
        ctx["catalog_listener"] = start_invalidation_listener(ctx["redis"].queue, ctx["catalog"])
        log.info("worker_started", queue=name, concurrency=settings.worker.queue(name).concurrency)

    async def shutdown(ctx: WorkerContext) -> None:
        engine = ctx.get("db_engine")
        if engine is not None:
            await engine.dispose()
        listener = ctx.get("catalog_listener")
        if listener is not None:
            await stop_invalidation_listener(listener)
        redis = ctx.get("redis")
        if redis is not None:
            await redis.close()
        log.info("worker_stopped", queue=name)

    async def before_process(ctx: WorkerContext) -> None:
        job = ctx.get("job")
        structlog.contextvars.bind_contextvars(
            job_id=getattr(job, "id", None), job_function=getattr(job, "function", None)
        )

    async def after_process(ctx: WorkerContext) -> None:
        structlog.contextvars.unbind_contextvars("job_id", "job_function")

    return QueueWorker(
        queue,
        functions=QUEUE_FUNCTIONS[name],
        concurrency=settings.worker.queue(name).concurrency,
        startup=startup,
        shutdown=shutdown,
        before_process=before_process,
        after_process=after_process,
        shutdown_grace_period_s=settings.worker.shutdown_grace,
        # Idle slots block on Redis; a bounded wait lets them see a stop request within a second
        # instead of holding shutdown for the whole grace period.
        dequeue_timeout=1.0,
    )
