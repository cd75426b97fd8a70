"""The sweep for a dead worker's jobs and the liveness test, against the real queue Redis.

Each test has a queue of its own name, so nothing else's jobs are in its lists.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from saq.job import Job, Status
from saq.utils import now

from tests.support.jobs import delete_queue
from wingman.config import Settings
from wingman.job_recovery import ABORT_WAIT_S, UNCLAIMED_GRACE_S, RecoveringQueue


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[RecoveringQueue]:
    queue = RecoveringQueue.at(settings.redis.queue_url, f"recovery-{uuid.uuid4().hex[:8]}")
    try:
        yield queue
    finally:
        await delete_queue(queue.redis, queue.name)
        await queue.disconnect()


async def take(
    queue: RecoveringQueue,
    worker_id: str,
    *,
    age_s: float,
    status: Status = Status.ACTIVE,
    job_timeout: int = 600,
) -> Job:
    """Enqueue a job and move it to the active list as a worker does, started ``age_s`` ago."""
    job = await queue.enqueue("ping", timeout=job_timeout, heartbeat=30, retries=3)
    assert job is not None
    taken = await queue.dequeue()
    assert taken is not None
    if status is Status.ACTIVE:
        taken.started = now() - int(age_s * 1000)
        taken.attempts += 1
        taken.worker_id = worker_id
        await queue.update(taken, status=Status.ACTIVE)
        # ``update`` stamps ``touched`` now; age the heartbeat with the start.
        taken.touched = taken.started
        await queue.redis.set(taken.id, queue.serialize(taken))
    return taken


async def queued_ids(queue: RecoveringQueue) -> set[str]:
    return {raw.decode() for raw in await queue.redis.lrange(queue.namespace("queued"), 0, -1)}


async def unlock(queue: RecoveringQueue) -> None:
    await queue.redis.delete(queue.namespace("sweep"))


async def test_a_dead_workers_jobs_are_requeued_at_once_and_together(
    queue: RecoveringQueue,
) -> None:
    # As many as one ``ai`` worker runs at once.
    orphans = [await take(queue, "dead-worker", age_s=20) for _ in range(50)]
    # A live worker's job with a fresh heartbeat stays where it is.
    await queue.write_worker_info("live-worker", {"queue_key": queue.name}, ttl=30)  # type: ignore[typeddict-item]
    running = await take(queue, "live-worker", age_s=0)
    for job in orphans:
        assert not await queue.is_live(await queue.job(job.key))
    assert await queue.is_live(await queue.job(running.key))

    started = time.monotonic()
    swept = await queue.sweep(lock=5)
    took = time.monotonic() - started

    print(f"\nsweep of 50 orphans of a dead worker: {took * 1000:.0f} ms")
    assert took < 5.0  # SAQ's own sweep waited 5 s for each of them: 250 s
    assert sorted(swept) == sorted(job.id for job in orphans)
    assert await queued_ids(queue) == {job.id for job in orphans}
    for job in orphans:
        stored = await queue.job(job.key)
        assert stored is not None
        assert stored.status is Status.QUEUED
        assert await queue.is_live(stored)
    stored_running = await queue.job(running.key)
    assert stored_running is not None
    assert stored_running.status is Status.ACTIVE


async def test_a_live_workers_late_heartbeats_are_not_taken_for_death(
    queue: RecoveringQueue,
) -> None:
    """A busy event loop sends heartbeats late; the worker still reports in, so its jobs stay."""
    await queue.write_worker_info("busy-worker", {"queue_key": queue.name}, ttl=30)  # type: ignore[typeddict-item]
    late = await take(queue, "busy-worker", age_s=45)
    assert await queue.is_live(await queue.job(late.key))
    assert await queue.sweep(lock=5) == []
    assert await queued_ids(queue) == set()


async def test_overdue_jobs_of_a_live_worker_wait_for_its_abort_together(
    queue: RecoveringQueue,
) -> None:
    """Far past their timeout, though the worker reports in: aborted first, one bounded wait."""
    await queue.write_worker_info("hung-worker", {"queue_key": queue.name}, ttl=30)  # type: ignore[typeddict-item]
    stuck = [await take(queue, "hung-worker", age_s=45, job_timeout=10) for _ in range(10)]
    started = time.monotonic()
    swept = await queue.sweep(lock=5)
    took = time.monotonic() - started
    print(f"\nsweep of 10 stuck jobs of an unresponsive worker: {took:.2f} s")
    assert took < ABORT_WAIT_S + 1.5  # not 10 waits one after another
    assert len(swept) == 10
    assert await queued_ids(queue) == {job.id for job in stuck}


async def test_a_job_just_taken_is_left_alone_until_a_later_sweep(
    queue: RecoveringQueue,
) -> None:
    """In the active list but not yet marked active: another worker is taking it, or died
    between the two steps; only put back when still so after a grace period."""
    taken = await take(queue, "", age_s=0, status=Status.QUEUED)
    assert await queue.sweep(lock=5) == []
    await unlock(queue)
    assert await queue.sweep(lock=5) == []
    assert await queued_ids(queue) == set()
    # As seen by a sweep the grace period later.
    queue._unclaimed[taken.id] -= UNCLAIMED_GRACE_S + 1
    await unlock(queue)
    assert await queue.sweep(lock=5) == [taken.id]
    assert await queued_ids(queue) == {taken.id}


async def test_a_record_left_aborting_by_a_killed_sweep_is_not_live(
    queue: RecoveringQueue,
) -> None:
    """SAQ's sweep marks a job aborting and removes it from its lists before waiting; killed
    then, the record stays aborting with no list to be found in."""
    job = await take(queue, "dead-worker", age_s=40)
    await queue.abort(job, error="swept", ttl=1)
    stored = await queue.job(job.key)
    assert stored is not None
    assert stored.status is Status.ABORTING
    assert not await queue.is_live(stored)
    # Nothing sweeps it: it is in no list.
    await unlock(queue)
    assert await queue.sweep(lock=5) == []
