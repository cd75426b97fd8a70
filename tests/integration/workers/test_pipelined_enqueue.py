"""The web's enqueue over the pipelined Redis connection: the same job records and outcomes as
SAQ's own enqueue, against the real queue Redis."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator

import pytest
from saq.job import Status
from saq.queue.redis import RedisQueue

from tests.support.jobs import delete_queue
from wingman.config import Settings
from wingman.queues import ENQUEUE_SCRIPT, PipelinedQueue
from wingman.server.redis import client
from wingman.server.redis_mux import RedisMux


def words(text: str) -> list[str]:
    return text.split()


def test_the_script_is_saqs_own() -> None:
    # A SAQ upgrade that changes its enqueue script fails here, not in production.
    source = inspect.getsource(RedisQueue._enqueue)
    assert " ".join(words(ENQUEUE_SCRIPT)) in " ".join(words(source))


@pytest.fixture
async def queues(settings: Settings) -> AsyncIterator[tuple[PipelinedQueue, RedisQueue]]:
    """A pipelined producer and SAQ's plain queue of one fresh name on the same Redis."""
    name = f"pipelined-{uuid.uuid4().hex[:8]}"
    mux = RedisMux(settings.redis.queue_url, name="tests-enqueue")
    producer = PipelinedQueue(client(settings.redis.queue_url, timeout=None), name, mux)
    plain = RedisQueue(producer.redis, name=name)
    try:
        yield producer, plain
    finally:
        await delete_queue(plain.redis, name)
        await mux.close()
        await producer.disconnect()


async def test_a_job_enqueued_over_the_pipe_is_saqs_job(
    queues: tuple[PipelinedQueue, RedisQueue],
) -> None:
    producer, plain = queues
    job = await producer.enqueue("generate_reply", key="reply:1", timeout=30, message_id="m-1")
    assert job is not None
    # A live job with the same key absorbs a second enqueue, as SAQ's does.
    assert await producer.enqueue("generate_reply", key="reply:1", message_id="m-1") is None
    assert await plain.count("queued") == 1

    taken = await plain.dequeue()
    assert taken is not None
    assert (taken.function, taken.key, taken.kwargs) == (
        "generate_reply",
        "reply:1",
        {"message_id": "m-1"},
    )
    assert taken.timeout == 30
    assert taken.status is Status.QUEUED
    assert taken.id == job.id


async def test_a_running_job_being_aborted_keeps_its_key(
    queues: tuple[PipelinedQueue, RedisQueue],
) -> None:
    producer, plain = queues
    assert await producer.enqueue("generate_reply", key="reply:2") is not None
    running = await plain.dequeue()
    assert running is not None
    # Its worker has not acknowledged the abort yet: the key stays taken, as with SAQ's script.
    await plain.abort(running, "cancelled")
    assert await producer.enqueue("generate_reply", key="reply:2") is None
    await plain.redis.delete(running.abort_id)
    assert await producer.enqueue("generate_reply", key="reply:2") is not None
