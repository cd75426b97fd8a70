"""Replies produced by real ``wingmanctl worker`` processes: lifecycle, cancel, regenerate, crashes,
a lost queue and a burst of posts. Exactly one stored reply per AI message, always."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.ai.conftest import Harness, assemble, send, start_session, user_events
from tests.support.accounts import create_caller
from tests.support.services import child_env
from wingman.config import OfflineProviderSettings, Settings
from wingman.db.models import Message, MessageSender, ProcessingStatus, UserTier
from wingman.queues import create_queue


def worker_settings(settings: Settings, *, token_ms: float = 0, **ai: Any) -> Settings:
    """The harness's settings with the offline provider's pace and other ``[ai]`` values."""
    return msgspec.structs.replace(
        settings,
        ai=msgspec.structs.replace(
            settings.ai, offline=OfflineProviderSettings(token_interval_ms=token_ms), **ai
        ),
    )


@contextmanager
def worker(settings: Settings, folder: Path, queue: str) -> Iterator[subprocess.Popen[bytes]]:
    home = folder / f"{queue}-{os.urandom(3).hex()}"
    env = child_env(settings, home)
    # The worker's log stays with the test's files (pytest shows the folder on failure).
    with (home / "worker.log").open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wingman", "worker", "--queue", queue],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def status_of(engine: AsyncEngine, message_id: str) -> Message:
    async with engine.connect() as connection:
        row = (
            await connection.execute(select(Message).where(Message.id == UUID(message_id)))
        ).one()
    return row  # type: ignore[return-value]


async def wait_for(
    engine: AsyncEngine, message_id: str, *states: ProcessingStatus, within: float = 30
) -> Message:
    async with asyncio.timeout(within):
        while True:
            row = await status_of(engine, message_id)
            if row.processing_status in states:
                return row
            await asyncio.sleep(0.1)


async def first_delta(ai: Harness, message_id: str) -> None:
    # Includes the worker process's start, which takes tens of seconds on a busy host.
    async with asyncio.timeout(60):
        while True:  # polling the history: the test has no socket to wait on
            events = await user_events(ai.redis, ai.user.id)
            if any(
                e.type == "message.delta" and e.data["message_id"] == message_id for e in events
            ):
                return
            await asyncio.sleep(0.05)


async def test_a_worker_writes_and_streams_the_reply(ai: Harness, tmp_path: Path) -> None:
    settings = worker_settings(ai.settings, token_ms=5)
    with worker(settings, tmp_path, "ai"):
        chat = await start_session(ai.client, ai.user)
        pair = await send(ai.client, ai.user, chat["id"], "Do you like hiking in autumn?")
        ai_id = pair["ai_message"]["id"]
        assert pair["ai_message"]["processing_status"] == "queued"
        row = await wait_for(ai.engine, ai_id, ProcessingStatus.DONE)
    events = await user_events(ai.redis, ai.user.id)
    assert assemble(events, ai_id) == row.content
    assert "autumn" in row.content or "hiking" in row.content  # the offline reply echoes a topic
    completed = [e for e in events if e.type == "message.completed"]
    assert [e.data["id"] for e in completed] == [ai_id]


async def test_cancel_stops_a_running_generation(ai: Harness, tmp_path: Path) -> None:
    settings = worker_settings(ai.settings, token_ms=200)  # ~10 s for a whole reply
    with worker(settings, tmp_path, "ai"):
        chat = await start_session(ai.client, ai.user)
        pair = await send(ai.client, ai.user, chat["id"], "Tell me a long story")
        ai_id = pair["ai_message"]["id"]
        await first_delta(ai, ai_id)
        answer = await ai.client.post(f"/api/v1/messages/{ai_id}/cancel", headers=ai.user.headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["processing_status"] == "cancelled"
        # Nothing must happen from here on, so these sleeps are the test: a second for deltas
        # already in flight to land, then a second in which no new one may appear.
        await asyncio.sleep(1.0)
        deltas_after_a_second = len(
            [e for e in await user_events(ai.redis, ai.user.id) if e.type == "message.delta"]
        )
        await asyncio.sleep(1.0)
        deltas_later = len(
            [e for e in await user_events(ai.redis, ai.user.id) if e.type == "message.delta"]
        )
    assert deltas_later == deltas_after_a_second, "the generation kept streaming after cancel"
    row = await status_of(ai.engine, ai_id)
    assert row.processing_status == ProcessingStatus.CANCELLED
    assert row.content == ""
    again = await ai.client.post(f"/api/v1/messages/{ai_id}/cancel", headers=ai.user.headers)
    assert again.status_code == 409
    assert again.json()["type"].endswith(":not-cancellable")


async def test_regenerate_adds_a_reply_and_keeps_the_old_one(ai: Harness, tmp_path: Path) -> None:
    settings = worker_settings(ai.settings, token_ms=20)
    with worker(settings, tmp_path, "ai"):
        chat = await start_session(ai.client, ai.user)
        pair = await send(ai.client, ai.user, chat["id"], "What should we cook tonight?")
        first = pair["ai_message"]["id"]
        busy = await ai.client.post(f"/api/v1/messages/{first}/regenerate", headers=ai.user.headers)
        assert busy.status_code == 409
        assert busy.json()["type"].endswith(":reply-in-progress")
        await wait_for(ai.engine, first, ProcessingStatus.DONE)
        answer = await ai.client.post(
            f"/api/v1/messages/{first}/regenerate", headers=ai.user.headers
        )
        assert answer.status_code == 202, answer.text
        second = answer.json()
        assert second["reply_to_id"] == pair["user_message"]["id"]
        assert second["processing_status"] == "queued"
        await wait_for(ai.engine, second["id"], ProcessingStatus.DONE)
    detail = (await ai.client.get(f"/api/v1/sessions/{chat['id']}", headers=ai.user.headers)).json()
    assert detail["session"]["message_count"] == 3
    ids = {m["id"] for m in detail["messages"]["items"]}
    assert {first, second["id"]} <= ids
    # Someone else's message is not found, and neither is an unknown one.
    stranger = await create_caller(ai.engine, ai.settings)
    foreign = await ai.client.post(f"/api/v1/messages/{first}/regenerate", headers=stranger.headers)
    assert foreign.status_code == 404


async def test_a_killed_worker_ends_in_exactly_one_complete_reply(
    ai: Harness, tmp_path: Path
) -> None:
    settings = worker_settings(ai.settings, token_ms=100)  # ~5 s for a reply
    chat = await start_session(ai.client, ai.user)
    with worker(settings, tmp_path, "ai") as doomed:
        pair = await send(ai.client, ai.user, chat["id"], "Guess what happened at work today")
        ai_id = pair["ai_message"]["id"]
        await first_delta(ai, ai_id)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(5)
    assert (await status_of(ai.engine, ai_id)).processing_status == ProcessingStatus.PROCESSING
    with worker(worker_settings(ai.settings, token_ms=5), tmp_path, "ai"):
        row = await wait_for(ai.engine, ai_id, ProcessingStatus.DONE, within=90)
    assert row.attempts == 2
    events = await user_events(ai.redis, ai.user.id)
    completed = [e for e in events if e.type == "message.completed"]
    assert [e.data["id"] for e in completed] == [ai_id]
    # The second run restarted the text at offset 0: a client shows exactly the stored reply.
    assert assemble(events, ai_id) == row.content
    assert row.tokens_out == len(row.content.split(" "))


async def reconciler_rounds(settings: Settings, rounds: int, *, within: float = 30) -> None:
    """Wait until the reply reconciler's cron job has completed ``rounds`` more times.

    SAQ keeps one record per cron job (key ``cron:<function>``) and stamps ``completed`` on each
    run, so a new stamp is a finished round.
    """
    queue = create_queue(settings, "default")
    seen: set[int] = set()
    try:
        async with asyncio.timeout(within):
            while len(seen) <= rounds:
                job = await queue.job("cron:reconcile_replies")
                if job is not None and job.completed:
                    seen.add(job.completed)
                await asyncio.sleep(0.1)
    finally:
        await queue.disconnect()


async def test_a_lost_queue_is_caught_up_by_the_reconciler(ai: Harness, tmp_path: Path) -> None:
    chat = await start_session(ai.client, ai.user)
    pair = await send(ai.client, ai.user, chat["id"], "Are you free this weekend?")
    ai_id = pair["ai_message"]["id"]
    await ai.redis.flushdb()  # the queued job is gone; the database still owes a reply
    settings = worker_settings(ai.settings, stale_after_seconds=1, reconcile_every_seconds=1)
    with worker(settings, tmp_path, "ai"), worker(settings, tmp_path, "default"):
        done = await wait_for(ai.engine, ai_id, ProcessingStatus.DONE, within=45)
        await reconciler_rounds(ai.settings, 2)  # more rounds after the reply: none enqueues it
        row = await status_of(ai.engine, ai_id)  # read after those rounds, not before
    assert row.attempts == 1
    assert row.content == done.content
    completed = [
        e for e in await user_events(ai.redis, ai.user.id) if e.type == "message.completed"
    ]
    assert [e.data["id"] for e in completed] == [ai_id]


async def test_five_hundred_concurrent_posts_get_five_hundred_replies(
    ai: Harness, tmp_path: Path
) -> None:
    callers = [
        await create_caller(ai.engine, ai.settings, tier=UserTier.PREMIUM) for _ in range(10)
    ]
    chats = [await start_session(ai.client, caller) for caller in callers]
    semaphore = asyncio.Semaphore(50)

    async def post(index: int) -> str:
        caller, chat = callers[index % 10], chats[index % 10]
        async with semaphore:
            pair = await send(ai.client, caller, chat["id"], f"message number {index}")
        return str(pair["ai_message"]["id"])

    with worker(worker_settings(ai.settings), tmp_path, "ai"):
        ai_ids = await asyncio.gather(*(post(n) for n in range(500)))
        async with asyncio.timeout(120):
            while True:
                async with ai.engine.connect() as connection:
                    done = await connection.scalar(
                        select(func.count())
                        .select_from(Message)
                        .where(
                            Message.id.in_([UUID(i) for i in ai_ids]),
                            Message.processing_status == ProcessingStatus.DONE,
                        )
                    )
                if done == 500:
                    break
                await asyncio.sleep(0.5)
    async with ai.engine.connect() as connection:
        replies = await connection.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.session_id.in_([UUID(c["id"]) for c in chats]),
                Message.sender == MessageSender.AI,
            )
        )
        runs = await connection.scalar(
            select(func.sum(Message.attempts)).where(Message.id.in_([UUID(i) for i in ai_ids]))
        )
    assert len(set(ai_ids)) == 500
    assert replies == 500
    assert runs == 500  # one run each: no job ran twice
    completed: list[str] = []
    for caller in callers:
        completed += [
            e.data["id"]
            for e in await user_events(ai.redis, caller.id)
            if e.type == "message.completed"
        ]
    assert sorted(completed) == sorted(ai_ids)
