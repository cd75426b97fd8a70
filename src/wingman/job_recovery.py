"""Getting a dead worker's jobs running again, quickly, without holding up the live workers.

SAQ (0.26) keeps a running job's id in the queue's ``active`` list and its record (status,
``worker_id``, ``touched``) under its own key. When the worker is killed, nothing else changes:
the job looks ``active`` until someone notices. Two things here make that notice fast and safe.

**Heartbeats.** SAQ only counts a job as stuck when its ``heartbeat`` lapses, but never sends
one itself: a job must call ``job.update()``. :func:`with_heartbeat` does that for every job
function, every third of the job's heartbeat, so a healthy long job (a slow reply) is never taken
for a dead one, and a dead worker's job goes quiet at once.

**The sweep.** SAQ's own ``RedisQueue.sweep`` goes through the active list one job at a time and,
for each stuck one, marks it ``aborting`` and then *waits* up to ``abort`` seconds (5) for the
worker that runs it to acknowledge. A killed worker never does, so every orphan cost the full 5 s,
one after another (10 orphans: ~1 min; 50: minutes). Worse, a process killed during that wait
left the job's record ``aborting`` and outside every SAQ list, where no later sweep looks.
:class:`RecoveringQueue` replaces that method (SAQ's worker still calls it from its own upkeep
loop, in the background, every ``timers["sweep"]`` seconds, under SAQ's sweep lock):

- a job whose worker has stopped refreshing its ``worker_info`` key (SAQ writes it every
  ``timers["worker_info"]`` seconds with a TTL one second longer) and whose own heartbeat has
  gone quiet is an orphan: it is put back in the queue at once, in one atomic step (``retry``),
  never passing through ``aborting``;
- a job of a worker that still reports in is left alone while it runs: its heartbeat comes from
  the same event loop as the report, so a lapsed heartbeat there means a busy loop, not a dead
  job (SAQ would abort it, and the reply would run twice). Only a job far past its ``timeout``
  (which the worker enforces itself) gets SAQ's treatment: abort, let that worker cancel it,
  then retry; all such jobs at once, with a short wait (the owning worker checks for aborts
  every ``timers["abort"]`` second);
- an id in the active list whose record is not ``active`` yet is usually a job another worker
  dequeued a moment ago; it is only put back when it is still so ``UNCLAIMED_GRACE_S`` later.

**Outcomes that outlive a failover.** When a job ends, SAQ writes its outcome (``_finish``: done
or failed; ``_retry``: back in the queue) once; a Redis connection error there (the master
killed, Sentinel promoting a replica) propagates out of the worker's job task, and the job's
record stays ``active`` until a sweep finds it, the reply ``processing`` meanwhile.
:class:`RecoveringQueue` writes outcomes again on a connection or timeout error, with backoff,
for up to ``OUTCOME_RETRY_S`` (a failover takes seconds). The writes are made safe to repeat: a
transaction whose answer was lost may have been applied, so the queued list loses every copy of
the id before the one push. The notification afterwards is best effort (its listeners poll too).

PostgreSQL decides what is stored (``domain/ai/generation``: a run writes only under its own
``run_id``), so a job that runs twice after a misjudgement costs time, never a second reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from saq.job import Job, Status
from saq.queue.redis import RedisQueue
from saq.utils import millis, now

from wingman.server.redis import client

log = structlog.get_logger(__name__)

# Seconds a sweep waits for a live worker to acknowledge an abort (it checks every second).
ABORT_WAIT_S = 2.0
# A live worker cancels a job at its timeout itself; only this much later does a sweep step in.
OVERDUE_AFTER_S = 10.0
# How long an id may sit in the active list without an ``active`` record (a worker between its
# two steps of taking a job, slowed by a busy event loop) before a sweep takes it for lost.
UNCLAIMED_GRACE_S = 10.0
# SAQ's worker_info TTL with the timers the workers use (written every 10 s, TTL 11 s). A job
# younger than this may belong to a worker that has not written its first worker_info yet.
WORKER_INFO_TTL_S = 11.0
SWEPT = "swept: its worker stopped"
# How long a job's outcome is written again while Redis cannot be reached (a Sentinel failover
# takes a few seconds; a restarted server, longer), and the longest wait between two attempts.
OUTCOME_RETRY_S = 45.0
OUTCOME_BACKOFF_MAX_S = 2.0
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)

JobFunction = Callable[..., Awaitable[Any]]


def _heartbeat_interval(job: Job) -> float:
    return max(1.0, job.heartbeat / 3)


async def _beat(job: Job) -> None:
    interval = _heartbeat_interval(job)
    while True:
        await asyncio.sleep(interval)
        try:
            # Rewrites the record with a fresh ``touched``; the stored status is kept, so an
            # abort requested meanwhile still reaches the worker.
            await job.update()
        except (RedisError, OSError) as exc:
            log.warning("job_heartbeat_failed", job_key=job.key, error=str(exc))


@functools.cache
def with_heartbeat(function: JobFunction) -> JobFunction:
    """``function`` as a SAQ job that refreshes its heartbeat while it runs (same name).

    Cached so that the same function registered twice (a cron job is also in the list of
    functions) is one object to SAQ.
    """

    @functools.wraps(function)
    async def run(ctx: Any, **kwargs: Any) -> Any:
        job: Job | None = ctx.get("job")
        if job is None or not job.heartbeat:
            return await function(ctx, **kwargs)
        # Stopped before the function returns, hence before SAQ writes the outcome: a late beat
        # never rewrites a finished job's record.
        beat = asyncio.create_task(_beat(job), name=f"heartbeat:{job.key}")
        try:
            return await function(ctx, **kwargs)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    return run


class RecoveringQueue(RedisQueue):
    """SAQ's Redis queue with a sweep that never blocks and a liveness test for job records."""

    def __init__(self, redis: Redis, name: str) -> None:
        super().__init__(redis, name=name)
        # Ids in the active list without an ``active`` record: when a sweep first saw them.
        self._unclaimed: dict[str, float] = {}

    @classmethod
    def at(cls, url: str, name: str) -> RecoveringQueue:
        # No socket timeout: SAQ's dequeue blocks on BLMOVE for longer than any sensible one.
        return cls(client(url, timeout=None), name)

    async def _retry(self, job: Job, error: str | None) -> None:
        job_id = job.id
        delay = job.next_retry_delay()

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrem(self._active, 1, job_id)
                # Every copy: a repeated write must not queue the job twice.
                pipe.lrem(self._queued, 0, job_id)
                if delay:
                    pipe.zadd(self._incomplete, {job_id: time.time() + delay})
                else:
                    pipe.zadd(self._incomplete, {job_id: job.scheduled})
                    pipe.rpush(self._queued, job_id)
                pipe.set(job_id, self.serialize(job))
                await pipe.execute()

        await self._write_outcome(job, "retry", write)

    async def _finish(
        self,
        job: Job,
        status: Status,
        *,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        job_id = job.id

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrem(self._active, 1, job_id)
                pipe.zrem(self._incomplete, job_id)
                if job.ttl > 0:
                    pipe.setex(job_id, job.ttl, self.serialize(job))
                elif job.ttl == 0:
                    pipe.set(job_id, self.serialize(job))
                else:
                    pipe.delete(job_id)
                await pipe.execute()

        await self._write_outcome(job, "finish", write)

    async def _write_outcome(
        self, job: Job, what: str, write: Callable[[], Awaitable[None]]
    ) -> None:
        """``write()``, again on a lost connection until it lands or ``OUTCOME_RETRY_S`` pass;
        then the notification, best effort."""
        deadline = time.monotonic() + OUTCOME_RETRY_S
        pause = 0.1
        attempts = 0
        while True:
            try:
                await write()
                break
            except _UNREACHABLE as exc:
                attempts += 1
                if time.monotonic() + pause > deadline:
                    log.error("job_outcome_lost", job_key=job.key, outcome=what, error=str(exc))
                    raise
                if attempts == 1:
                    log.warning(
                        "job_outcome_retrying", job_key=job.key, outcome=what, error=str(exc)
                    )
                await asyncio.sleep(pause)
                pause = min(OUTCOME_BACKOFF_MAX_S, pause * 2)
        if attempts:
            log.info("job_outcome_written", job_key=job.key, outcome=what, attempts=attempts + 1)
        try:
            await self.notify(job)
        except _UNREACHABLE as exc:
            log.warning("job_notify_failed", job_key=job.key, error=str(exc))

    def _worker_key(self, worker_id: str) -> str:
        return self.namespace(f"worker_info:{worker_id}")

    async def _live_workers(self, worker_ids: Iterable[str]) -> set[str]:
        ids = sorted(set(worker_ids))
        if not ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.exists(self._worker_key(worker_id))
            found = await pipe.execute()
        return {worker_id for worker_id, exists in zip(ids, found, strict=True) if exists}

    async def is_live(self, job: Job | None) -> bool:
        """Whether a worker holds or will take ``job``: queued, or running with a live worker.

        A record that says ``active`` or ``aborting`` proves nothing by itself (a killed worker
        leaves it so): it also needs a fresh heartbeat and a worker that still reports in.
        """
        if job is None:
            return False
        if job.status in (Status.NEW, Status.QUEUED):
            return True
        if job.status not in (Status.ACTIVE, Status.ABORTING):
            return False
        if job.worker_id is None:
            return not job.stuck
        if not _silent(job):
            return True
        return bool(await self._live_workers([job.worker_id]))

    async def sweep(self, lock: int = 60, abort: float = ABORT_WAIT_S) -> list[str]:
        """Put back the active list's orphans; SAQ calls this every ``timers["sweep"]`` s."""
        # SAQ's lock: one sweep per interval across all workers of the queue.
        if not await self.redis.set(self._sweep, 1, ex=lock, nx=True):
            return []
        started = time.monotonic()
        job_ids = [_text(raw) for raw in await self.redis.lrange(self._active, 0, -1)]
        records = await self.redis.mget(job_ids) if job_ids else []
        jobs = [
            (job_id, self.deserialize(raw)) for job_id, raw in zip(job_ids, records, strict=True)
        ]
        live = await self._live_workers(
            job.worker_id for _, job in jobs if job is not None and job.worker_id
        )
        clock = time.monotonic()
        unclaimed: dict[str, float] = {}
        acted: list[str] = []
        work: list[Awaitable[None]] = []
        for job_id, job in jobs:
            step = self._step(job_id, job, live, abort, clock)
            if step is not None:
                acted.append(job_id)
                work.append(step)
            elif job is not None and job.status is not Status.ACTIVE:
                unclaimed[job_id] = self._unclaimed.get(job_id, clock)
        self._unclaimed = unclaimed
        if not work:
            return []
        # All at once: the slowest step (a live worker's abort) bounds the sweep, not the sum.
        for result in await asyncio.gather(*work, return_exceptions=True):
            if isinstance(result, BaseException):
                log.warning("sweep_step_failed", error=repr(result))
        log.warning(
            "jobs_swept",
            queue=self.name,
            count=len(acted),
            seconds=round(time.monotonic() - started, 3),
        )
        return acted

    def _step(
        self, job_id: str, job: Job | None, live: set[str], abort: float, clock: float
    ) -> Awaitable[None] | None:
        """What the sweep does about one id of the active list, if anything."""
        if job is None:
            return self._drop_missing(job_id)
        if job.status is not Status.ACTIVE:
            if clock - self._unclaimed.get(job_id, clock) > UNCLAIMED_GRACE_S:
                return self._requeue(job, f"left {job.status.value} in the active list")
            return None
        if job.worker_id is None:
            return self._abort_then_requeue(job, abort) if job.stuck else None
        if job.worker_id not in live:
            return self._requeue(job, "worker gone") if _silent(job) else None
        return self._abort_then_requeue(job, abort) if _overdue(job) else None

    async def _drop_missing(self, job_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._active, 0, job_id)
            pipe.zrem(self._incomplete, job_id)
            await pipe.execute()

    async def _requeue(self, job: Job, why: str) -> None:
        log.info("job_requeued", job_key=job.key, function=job.function, why=why)
        if job.retryable:
            await self.retry(job, error=SWEPT)
        else:
            await self.finish(job, Status.ABORTED, error=SWEPT)

    async def _abort_then_requeue(self, job: Job, wait: float) -> None:
        """SAQ's own handling of a stuck job whose worker lives, with a bounded wait."""
        await self.abort(job, error=self.swept_error_message)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            stored = await self.job(job.key)
            if stored is None or stored.status not in (Status.ABORTING, Status.ACTIVE):
                break
            await asyncio.sleep(0.1)
        await self._requeue(job, "stuck")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _overdue(job: Job) -> bool:
    """Running well past its timeout, which the worker itself should have enforced."""
    return bool(job.timeout) and now() - job.started > millis(job.timeout + OVERDUE_AFTER_S)


def _silent(job: Job) -> bool:
    """Whether ``job`` has been quiet long enough for its worker's silence to mean death.

    Older than a worker's first ``worker_info`` (a new worker may not have written it yet), and
    without a heartbeat for one and a half beats: SAQ's ``worker_info`` key outlives its refresh
    by one second only, so a live but busy event loop can let it lapse for a moment, and its
    jobs' heartbeats (same loop, three per ``heartbeat``) tell it apart from a dead one.
    """
    current = now()
    if current - (job.started or job.touched) <= millis(WORKER_INFO_TTL_S):
        return False
    return not job.heartbeat or current - job.touched > millis(1.5 * _heartbeat_interval(job))
