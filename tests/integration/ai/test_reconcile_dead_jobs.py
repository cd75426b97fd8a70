"""The reconciler against job records that outlived their worker (real worker processes)."""

from __future__ import annotations

import time
from pathlib import Path
from uuid import UUID

from saq.job import Status
from saq.utils import now

from tests.integration.ai.conftest import Harness, send, start_session
from tests.integration.ai.test_worker_replies import wait_for, worker, worker_settings
from wingman.db.models import ProcessingStatus
from wingman.domain.ai.jobs import reply_job_key
from wingman.queues import create_queue


async def test_a_reply_whose_job_was_left_aborting_is_enqueued_again(
    ai: Harness, tmp_path: Path
) -> None:
    """A sweep killed while it waited for an abort leaves the job's record ``aborting`` and in
    no SAQ list: no sweep finds it, and it must not pass for a live job."""
    chat = await start_session(ai.client, ai.user)
    pair = await send(ai.client, ai.user, chat["id"], "Shall we try the new bakery?")
    ai_id = pair["ai_message"]["id"]
    queue = create_queue(ai.settings, "ai")
    try:
        job = await queue.job(reply_job_key(UUID(ai_id)))
        assert job is not None
        # As the killed worker left it: taken by a worker now gone, heartbeat long lapsed ...
        await queue.redis.lrem(queue.namespace("queued"), 0, job.id)
        await queue.redis.rpush(queue.namespace("active"), job.id)
        job.worker_id = "worker-killed-with-minus-9"
        job.started = job.touched = now() - 60_000
        job.attempts = 1
        # ... then marked aborting by a sweep that was killed before it could retry the job.
        await queue.abort(job, error="swept", ttl=1)
        stored = await queue.job(job.key)
        assert stored is not None
        assert stored.status is Status.ABORTING
        assert not await queue.is_live(stored)
    finally:
        await queue.disconnect()

    settings = worker_settings(ai.settings, stale_after_seconds=1, reconcile_every_seconds=1)
    started = time.monotonic()
    with worker(settings, tmp_path, "ai"), worker(settings, tmp_path, "default"):
        row = await wait_for(ai.engine, ai_id, ProcessingStatus.DONE, within=90)
    took = time.monotonic() - started
    print(f"\nreply behind a dead 'aborting' job record: done {took:.1f} s after workers start")
    assert row.attempts == 1
    assert row.content
    assert row.tokens_out == len(row.content.split(" "))
