"""The SAQ queues as producers see them: one definition of each queue and of its job options.

SAQ's defaults (10 s timeout, 1 retry, no heartbeat) would silently drop a crashed worker's job,
so every job is enqueued through :func:`enqueue`, which applies the queue's timeout, heartbeat,
retries and backoff from the settings. Web handlers and jobs import this module; the workers
themselves live in :mod:`wingman.worker`.
"""

from __future__ import annotations

from typing import Any

from saq import Queue

from wingman.config import QueueName, Settings
from wingman.job_recovery import RecoveringQueue

# The web process's producers, by queue name (opened by the app's queues lifespan).
Queues = dict[str, RecoveringQueue]


def create_queue(settings: Settings, name: QueueName) -> RecoveringQueue:
    """The SAQ queue ``name`` on the queue-role Redis (its sweep: ``job_recovery``)."""
    return RecoveringQueue.at(settings.redis.queue_url, name)


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
