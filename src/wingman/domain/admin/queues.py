"""The admin's view of the SAQ queues: depth, running, waiting and failed jobs; retry, abort.

Everything goes through SAQ's own queue API (``info``, ``iter_jobs``, ``job``, ``retry``,
``abort``), shared by ``GET /admin/queues`` and ``wingmanctl queues``.

A failed job's record would expire with SAQ's default job TTL (10 minutes), before anyone
looks; the workers keep failed records for :data:`FAILED_JOB_TTL_S` instead (worker.py), and
that is how far back the failed list goes. Listing them scans the queue's job records (SCAN,
in batches), so its cost grows with the jobs finished in the last 10 minutes; it is an admin's
read, not a hot path.

A retry runs the job again with a fresh attempt budget. An abort ends a queued job at once and
asks the worker running an active one to cancel it (within a second). A reply aborted while it
is still owed is enqueued again by the reply reconciler: aborting stops a run, not the work.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from saq.job import Job, Status
from saq.queue.redis import RedisQueue

from wingman.config import QUEUE_NAMES

# How long a failed job's record stays readable (and retryable).
FAILED_JOB_TTL_S = 24 * 3600
# The end of a traceback is where its cause is; the rest is kept out of listings.
ERROR_TAIL_CHARS = 2_000
SCAN_BATCH = 1_000
ABORTED_BY_ADMIN = "aborted by an admin"


class QueueJob(msgspec.Struct, kw_only=True):
    key: str
    function: str
    status: str
    attempts: int
    retries: int
    error: str | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    # Set while waiting for a retry delay or a schedule.
    scheduled_for: datetime | None


class QueueView(msgspec.Struct, kw_only=True):
    name: str
    queued: int
    active: int
    scheduled: int
    workers: int
    # Failed job records still kept (the ``failed`` list shows at most ``limit`` of them).
    failed_total: int
    running: list[QueueJob]
    waiting: list[QueueJob]
    failed: list[QueueJob]


class QueuesView(msgspec.Struct, kw_only=True):
    queues: list[QueueView]


class UnknownQueue(LookupError):
    pass


class UnknownJob(LookupError):
    pass


class WrongJobState(Exception):
    def __init__(self, job: QueueJob, wanted: str) -> None:
        super().__init__(f"job {job.key} is {job.status}; only {wanted} jobs qualify")
        self.job = job


def _when(millis: int) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, UTC) if millis else None


def job_view(job: Job) -> QueueJob:
    error = job.error
    if error is not None and len(error) > ERROR_TAIL_CHARS:
        error = "…" + error[-ERROR_TAIL_CHARS:]
    return QueueJob(
        key=job.key,
        function=job.function,
        status=job.status.value,
        attempts=job.attempts,
        retries=job.retries,
        error=error,
        queued_at=_when(job.queued),
        started_at=_when(job.started),
        finished_at=_when(job.completed),
        scheduled_for=datetime.fromtimestamp(job.scheduled, UTC) if job.scheduled else None,
    )


async def keep_failed(queue: RedisQueue, job: Job) -> None:
    """Keep a job that ended failed readable for :data:`FAILED_JOB_TTL_S` (worker hook)."""
    if job.status is Status.FAILED:
        await queue.redis.expire(job.id, FAILED_JOB_TTL_S)


def check_queue(name: str) -> str:
    if name not in QUEUE_NAMES:
        raise UnknownQueue(name)
    return name


def _newest_first(jobs: list[Job], stamp: str) -> list[Job]:
    return sorted(jobs, key=lambda job: getattr(job, stamp) or 0, reverse=True)


async def queue_view(queue: RedisQueue, limit: int) -> QueueView:
    """Counts, and at most ``limit`` jobs of each list (running, waiting, failed)."""
    info = await queue.info(jobs=True, limit=limit)
    # info() lists active and incomplete jobs as dicts; read them back as jobs (one MGET).
    listed = [job for job in await queue.jobs(raw["key"] for raw in info["jobs"]) if job]
    running = [job for job in listed if job.status in (Status.ACTIVE, Status.ABORTING)]
    waiting = [job for job in listed if job.status in (Status.NEW, Status.QUEUED)]
    failed: list[Job] = []
    async for job in queue.iter_jobs(statuses=[Status.FAILED], batch_size=SCAN_BATCH):
        failed.append(job)
    return QueueView(
        name=queue.name,
        queued=info["queued"],
        active=info["active"],
        scheduled=info["scheduled"],
        workers=len(info["workers"]),
        failed_total=len(failed),
        running=[job_view(job) for job in running[:limit]],
        waiting=[job_view(job) for job in waiting[:limit]],
        failed=[job_view(job) for job in _newest_first(failed, "completed")[:limit]],
    )


async def _find(queue: RedisQueue, key: str) -> Job:
    job = await queue.job(key)
    if job is None:
        raise UnknownJob(key)
    return job


async def retry_job(queue: RedisQueue, key: str) -> QueueJob:
    """Run a failed or aborted job again, with its whole retry budget."""
    job = await _find(queue, key)
    if job.status not in (Status.FAILED, Status.ABORTED):
        raise WrongJobState(job_view(job), "failed or aborted")
    job.attempts = 0
    await queue.retry(job, error=None)
    return job_view(job)


async def abort_job(queue: RedisQueue, key: str) -> QueueJob:
    """End a queued job now; ask the worker of an active one to cancel it."""
    job = await _find(queue, key)
    if job.status not in (Status.NEW, Status.QUEUED, Status.ACTIVE):
        raise WrongJobState(job_view(job), "queued or active")
    was_running = job.status is Status.ACTIVE
    await queue.abort(job, error=ABORTED_BY_ADMIN)
    stored = await queue.job(key)
    if stored is None:
        return job_view(job)
    if not was_running and stored.status is Status.ABORTING:
        # SAQ ends an aborted job itself only when it sat in the queued list; one waiting for
        # its time (a retry delay, a schedule) is left "aborting" with no worker to finish it.
        await queue.finish(stored, Status.ABORTED, error=ABORTED_BY_ADMIN)
    return job_view(stored)
