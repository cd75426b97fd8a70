"""Waiting for a SAQ job to finish, by reading it rather than listening for it; forgetting a
test's queue.

SAQ's ``Job.refresh(until_complete=…)`` reads the job, then subscribes to its status channel
in a task of its own; a job that finishes between the read and the subscription publishes to
nobody, and the wait runs out its whole timeout. Fast jobs (a ping) on a busy machine hit that
window, so tests poll the stored job instead.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from saq.job import TERMINAL_STATUSES, Job


async def wait_until_done(job: Job, seconds: float = 30.0) -> Job:
    """Re-read ``job`` every 50 ms until it reaches a terminal status (at most ``seconds``)."""

    async def poll() -> None:
        while True:
            await job.refresh()
            if job.status in TERMINAL_STATUSES:
                return
            await asyncio.sleep(0.05)

    try:
        async with asyncio.timeout(seconds):
            await poll()
    except TimeoutError:
        raise AssertionError(f"job {job.key} still {job.status} after {seconds} s") from None
    return job


async def delete_queue(redis: Redis, name: str) -> None:
    """Delete every key SAQ keeps for the queue ``name`` and its jobs."""
    keys = [key async for key in redis.scan_iter(f"saq:{name}:*")]
    keys += [key async for key in redis.scan_iter(f"saq:job:{name}:*")]
    if keys:
        await redis.delete(*keys)
