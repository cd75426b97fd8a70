"""A job's outcome written while its Redis is down: written once the server is back.

The test has a queue Redis of its own (AOF, as the queue role runs), stopped between a job's
start and its outcome and started again while the worker is still writing it, as a Sentinel
failover or a restart looks to a worker. The outcome lands: the job leaves the active list,
its record says how it ended, and a job put back is queued once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator

import pytest
from saq.job import Job, Status
from structlog.testing import capture_logs

from tests.support.services import private_redis
from wingman.devstack.redis import RedisServer
from wingman.job_recovery import RecoveringQueue


@pytest.fixture(scope="module")
def queue_redis() -> Iterator[RedisServer]:
    with private_redis("wingman-outcome-redis-") as server:
        yield server


@pytest.fixture
async def queue(queue_redis: RedisServer) -> AsyncIterator[RecoveringQueue]:
    queue_redis.start()
    queue = RecoveringQueue.at(queue_redis.url(), "outcome")
    try:
        yield queue
    finally:
        queue_redis.start()
        await queue.redis.flushall()
        await queue.disconnect()


async def running_job(queue: RecoveringQueue) -> Job:
    await queue.enqueue("ping", timeout=60, heartbeat=30, retries=3)
    job = await queue.dequeue()
    assert job is not None
    assert job.id in await ids(queue, "active")
    return job


async def ids(queue: RecoveringQueue, name: str) -> list[str]:
    return [raw.decode() for raw in await queue.redis.lrange(queue.namespace(name), 0, -1)]


async def across_a_restart(server: RedisServer, write: Awaitable[None]) -> int:
    """Stop Redis, start ``write``, start Redis once the write failed; the write's attempts."""
    server.stop()
    with capture_logs() as logs:
        task = asyncio.ensure_future(write)
        deadline = time.monotonic() + 10
        while True:
            if any(entry["event"] == "job_outcome_retrying" for entry in logs):
                break
            assert not task.done(), task.exception() if task.done() else None
            assert time.monotonic() < deadline, "the write never failed"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(task, 30)
    written = [entry for entry in logs if entry["event"] == "job_outcome_written"]
    assert len(written) == 1
    return int(written[0]["attempts"])


async def test_a_finished_jobs_outcome_is_written_after_a_restart(
    queue: RecoveringQueue, queue_redis: RedisServer
) -> None:
    job = await running_job(queue)

    attempts = await across_a_restart(queue_redis, queue.finish(job, Status.COMPLETE, result=1))

    assert attempts >= 2
    stored = await queue.job(job.key)
    assert stored is not None
    assert stored.status is Status.COMPLETE
    assert job.id not in await ids(queue, "active")


async def test_a_retried_job_is_queued_once_after_a_restart(
    queue: RecoveringQueue, queue_redis: RedisServer
) -> None:
    job = await running_job(queue)

    await across_a_restart(queue_redis, queue.retry(job, error="worker lost Redis"))

    assert job.id not in await ids(queue, "active")
    assert (await ids(queue, "queued")).count(job.id) == 1
    stored = await queue.job(job.key)
    assert stored is not None
    assert stored.status is Status.QUEUED
