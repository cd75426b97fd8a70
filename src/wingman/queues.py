"""The SAQ queues as producers see them: one definition of each queue and of its job options.

SAQ's defaults (10 s timeout, 1 retry, no heartbeat) would silently drop a crashed worker's job,
so every job is enqueued through :func:`enqueue`, which applies the queue's timeout, heartbeat,
retries and backoff from the settings. Web handlers and jobs import this module; the workers
themselves live in :mod:`wingman.worker`.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from saq import Queue
from saq.job import Job

from wingman.config import QueueName, Settings
from wingman.job_recovery import RecoveringQueue
from wingman.server.redis import client
from wingman.server.redis_mux import RedisMux

# The web process's producers, by queue name (opened by the app's queues lifespan).
Queues = dict[str, RecoveringQueue]

# SAQ's (0.26) enqueue script, word for word (a unit test compares it with SAQ's own): the job is
# stored and queued unless a job with its key is still incomplete or was aborted.
ENQUEUE_SCRIPT = """
if not redis.call('ZSCORE', KEYS[1], KEYS[2]) and redis.call('EXISTS', KEYS[4]) == 0 then
    redis.call('SET', KEYS[2], ARGV[1])
    redis.call('ZADD', KEYS[1], ARGV[2], KEYS[2])
    if ARGV[2] == '0' then redis.call('RPUSH', KEYS[3], KEYS[2]) end
    return 1
else
    return nil
end
"""


class PipelinedQueue(RecoveringQueue):
    """A producer's queue whose enqueue runs SAQ's script over the process's pipelined Redis
    connection (``server/redis_mux.py``) instead of a redis-py pool call: a message post's
    enqueue was a quarter of its handler's CPU, most of it in redis-py's call machinery. The
    stored job, its keys and the outcome are SAQ's; everything else stays on redis-py."""

    def __init__(self, redis: Redis, name: str, mux: RedisMux) -> None:
        super().__init__(redis, name)
        self._mux = mux

    async def _enqueue(self, job: Job) -> Job | None:
        async with self._op_sem:
            stored = await self._mux.evalsha(
                ENQUEUE_SCRIPT,
                [self._incomplete, job.id, self._queued, job.abort_id],
                [self.serialize(job), job.scheduled],
            )
        return job if stored else None


def create_queue(
    settings: Settings, name: QueueName, mux: RedisMux | None = None
) -> RecoveringQueue:
    """The SAQ queue ``name`` on the queue-role Redis (its sweep: ``job_recovery``); with
    ``mux`` (the queue role's pipelined connection) jobs are enqueued over it."""
    if mux is None:
        return RecoveringQueue.at(settings.redis.queue_url, name)
    # No socket timeout, as RecoveringQueue.at: the job queries stay on redis-py.
    return PipelinedQueue(client(settings.redis.queue_url, timeout=None), name, mux)


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
