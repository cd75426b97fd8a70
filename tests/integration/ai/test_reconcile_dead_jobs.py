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
from wingman.domain.chat.replies import reply_job_key
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


async def test_a_replayed_post_enqueues_a_reply_whose_job_was_lost(ai: Harness) -> None:
    """A post that committed but died before its enqueue (its node killed), then sent again
    with its idempotency key (by the client or a proxy): the replay enqueues the reply."""
    chat = await start_session(ai.client, ai.user)
    url = f"/api/v1/sessions/{chat['id']}/messages"
    body = {"content": "Is the bakery open on Sundays?", "idempotency_key": "bakery-sunday"}
    first = await ai.client.post(url, json=body, headers=ai.user.headers)
    assert first.status_code == 202, first.text
    ai_id = UUID(first.json()["ai_message"]["id"])
    queue = create_queue(ai.settings, "ai")
    try:
        job = await queue.job(reply_job_key(ai_id))
        assert job is not None
        # As if the enqueue had never happened.
        await queue.redis.lrem(queue.namespace("queued"), 0, job.id)
        await queue.redis.zrem(queue.namespace("incomplete"), job.id)
        await queue.redis.delete(job.id)
        assert await queue.job(reply_job_key(ai_id)) is None

        replay = await ai.client.post(url, json=body, headers=ai.user.headers)
        assert replay.status_code == 200, replay.text
        assert replay.json() == first.json()
        again = await queue.job(reply_job_key(ai_id))
        assert again is not None
        assert again.kwargs == {"message_id": str(ai_id)}
        # A second replay while that job is queued adds nothing: the key absorbs it.
        await ai.client.post(url, json=body, headers=ai.user.headers)
        queued = await queue.redis.lrange(queue.namespace("queued"), 0, -1)
        assert [entry.decode() for entry in queued].count(again.id) == 1
    finally:
        await queue.disconnect()
