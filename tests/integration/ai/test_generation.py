"""Reply runs in-process on real PostgreSQL and Redis, against a real OpenAI-protocol server."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID

from prometheus_client import REGISTRY
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.ai.conftest import Harness, assemble, send, start_session, user_events
from tests.integration.chat.conftest import add_tone
from tests.support.openai_server import OpenAIServer, Script
from tests.support.polling import eventually
from wingman.config import OpenAISettings
from wingman.db.models import GlobalConfig, Message, ProcessingStatus, ReplyLength
from wingman.domain.ai.generation import GAVE_UP, REFUSED, UNAVAILABLE, ReplyRun
from wingman.domain.ai.openai import OpenAICompatibleProvider
from wingman.domain.ai.prompt import LENGTH_GUIDANCE


async def use_openai(engine: AsyncEngine, model: str = "test-model") -> None:
    async with engine.begin() as connection:
        await connection.execute(
            GlobalConfig.__table__.delete().where(GlobalConfig.key == "ai")  # type: ignore[attr-defined]
        )
        await connection.execute(
            GlobalConfig.__table__.insert().values(  # type: ignore[attr-defined]
                key="ai", value={"provider": "openai", "model": model}
            )
        )


async def use_offline(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            GlobalConfig.__table__.delete().where(GlobalConfig.key == "ai")  # type: ignore[attr-defined]
        )


async def stored(engine: AsyncEngine, message_id: str) -> Message:
    async with engine.connect() as connection:
        row = (
            await connection.execute(select(Message).where(Message.id == UUID(message_id)))
        ).one()
    return row  # type: ignore[return-value]


def replies_counted(status: str) -> float:
    """This process's ``wingman_ai_replies_total`` (tests run in single-process metrics mode)."""
    return REGISTRY.get_sample_value("wingman_ai_replies_total", {"status": status}) or 0.0


def openai_provider(server: OpenAIServer, **settings: Any) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        OpenAISettings(base_url=server.base_url, api_key="sk-test", **settings), max_connections=4
    )


async def test_offline_reply_is_stored_once_and_streamed(
    ai: Harness,
) -> None:
    await use_offline(ai.engine)
    chat = await start_session(ai.client, ai.user)
    pair = await send(ai.client, ai.user, chat["id"], "I just got back from climbing in the Alps")
    ai_id = pair["ai_message"]["id"]
    done_before = replies_counted("done")
    result = await ReplyRun(ai.deps(), UUID(ai_id)).execute()
    assert result["outcome"] == "done"
    assert replies_counted("done") == done_before + 1

    row = await stored(ai.engine, ai_id)
    assert row.processing_status == ProcessingStatus.DONE
    assert row.content
    assert row.model == "wingman-offline"
    assert row.tokens_out
    assert row.tokens_in
    assert row.latency_ms is not None
    assert row.attempts == 1

    events = await user_events(ai.redis, ai.user.id)
    types = [e.type for e in events]
    assert types[:2] == ["message.created", "message.created"]
    assert types[-1] == "message.completed"
    assert "message.delta" in types
    assert assemble(events, ai_id) == row.content
    assert events[-1].data["content"] == row.content

    # A second run of the same message (a duplicate job) stores nothing and, although it
    # announces the finished reply again, no second ``message.completed`` goes out.
    again = await ReplyRun(ai.deps(), UUID(ai_id)).execute()
    assert again["outcome"] == "announced-again"
    assert (await stored(ai.engine, ai_id)).content == row.content
    assert await user_events(ai.redis, ai.user.id) == events


async def finished_without_event(ai: Harness, text: str, **finished: Any) -> str:
    """A posted message's AI reply, set finished in the database (``finished``: the columns) as
    a run that committed and died before publishing would leave it; its id."""
    chat = await start_session(ai.client, ai.user)
    pair = await send(ai.client, ai.user, chat["id"], text)
    ai_id = str(pair["ai_message"]["id"])
    async with ai.engine.begin() as connection:
        await connection.execute(
            update(Message).where(Message.id == UUID(ai_id)).values(**finished)
        )
    return ai_id


async def test_a_reply_stored_by_a_run_that_died_before_publishing_is_announced_again(
    ai: Harness,
) -> None:
    """A worker killed between its commit and its publish: SAQ runs the job again, and that run
    tells the user's sockets the reply is done (once, however often the job runs)."""
    ai_id = await finished_without_event(
        ai,
        "Did the run finish?",
        processing_status=ProcessingStatus.DONE,
        content="Stored, never announced.",
        attempts=1,
        completed_at=func.now(),
    )
    for _ in range(2):
        result = await ReplyRun(ai.deps(), UUID(ai_id)).execute()
        assert result["outcome"] == "announced-again"
    completed = [
        e for e in await user_events(ai.redis, ai.user.id) if e.type == "message.completed"
    ]
    assert [(e.data["id"], e.data["content"]) for e in completed] == [
        (ai_id, "Stored, never announced.")
    ]


async def test_a_reply_finished_before_the_event_history_is_not_announced_again(
    ai: Harness,
) -> None:
    """Past the history window no client can resume to it, and the mark that keeps the event
    from going out twice has expired: a late run leaves it to a REST refetch."""
    ai_id = await finished_without_event(
        ai,
        "An old question",
        processing_status=ProcessingStatus.FAILED,
        error=UNAVAILABLE,
        completed_at=func.now() - timedelta(seconds=601),
    )
    result = await ReplyRun(ai.deps(), UUID(ai_id)).execute()
    assert result["outcome"] == "not-in-flight"
    events = await user_events(ai.redis, ai.user.id)
    assert not [e for e in events if e.type in ("message.completed", "message.failed")]


async def test_openai_stream_with_a_503_then_success(
    ai: Harness,
    openai_server: OpenAIServer,
) -> None:
    await use_openai(ai.engine)
    openai_server.scripts = [
        Script(status=503, error_message="overloaded"),
        Script(pieces=["Sounds", " like", " a", " plan", "!"], usage=False),
    ]
    provider = openai_provider(openai_server)
    try:
        chat = await start_session(ai.client, ai.user)
        pair = await send(ai.client, ai.user, chat["id"], "Shall we meet on Friday?")
        ai_id = pair["ai_message"]["id"]
        deps = ai.deps(provider)
        result = await ReplyRun(deps, UUID(ai_id)).execute()
    finally:
        await provider.close()
        await use_offline(ai.engine)
    assert result["outcome"] == "done"
    row = await stored(ai.engine, ai_id)
    assert row.content == "Sounds like a plan!"
    assert row.model == "test-model"
    assert row.tokens_out == 5  # estimated: the server sent no usage
    assert len(openai_server.requests) == 2
    request = openai_server.requests[-1]
    assert request["stream"] is True
    assert request["model"] == "test-model"
    assert request["messages"][0]["role"] == "system"
    assert request["messages"][-1] == {"role": "user", "content": "Shall we meet on Friday?"}
    assert openai_server.auth_headers[-1] == "Bearer sk-test"
    events = await user_events(ai.redis, ai.user.id)
    assert assemble(events, ai_id) == row.content


async def test_a_dropped_stream_restarts_cleanly(
    ai: Harness,
    openai_server: OpenAIServer,
) -> None:
    await use_openai(ai.engine)
    pieces = ["One", " two", " three", " four"]
    openai_server.scripts = [Script(pieces=pieces, cut_after=2), Script(pieces=pieces)]
    provider = openai_provider(openai_server)
    try:
        chat = await start_session(ai.client, ai.user)
        pair = await send(ai.client, ai.user, chat["id"], "Count with me")
        ai_id = pair["ai_message"]["id"]

        result = await ReplyRun(ai.deps(provider), UUID(ai_id)).execute()
    finally:
        await provider.close()
        await use_offline(ai.engine)
    assert result["outcome"] == "done"
    row = await stored(ai.engine, ai_id)
    assert row.content == "One two three four"
    assert (row.tokens_in, row.tokens_out) == (11, 7)  # the server's usage chunk
    events = await user_events(ai.redis, ai.user.id)
    deltas = [e.data for e in events if e.type == "message.delta"]
    # The first try streamed "One two" before the cut; the retry starts again at offset 0.
    assert [d["offset"] for d in deltas].count(0) == 2
    assert assemble(events, ai_id) == "One two three four"


async def test_a_400_fails_at_once_and_keeps_the_provider_message(
    ai: Harness,
    openai_server: OpenAIServer,
) -> None:
    await use_openai(ai.engine, model="no-such-model")
    openai_server.scripts = [Script(status=400, error_message="model no-such-model not found")]
    provider = openai_provider(openai_server)
    try:
        chat = await start_session(ai.client, ai.user)
        pair = await send(ai.client, ai.user, chat["id"], "Hi")
        ai_id = pair["ai_message"]["id"]
        result = await ReplyRun(ai.deps(provider), UUID(ai_id)).execute()
    finally:
        await provider.close()
        await use_offline(ai.engine)
    assert result == {"message_id": ai_id, "outcome": "failed", "reason": "http_400"}
    assert len(openai_server.requests) == 1  # permanent: not retried
    row = await stored(ai.engine, ai_id)
    assert row.processing_status == ProcessingStatus.FAILED
    assert row.error == REFUSED
    assert "model no-such-model not found" in (row.failure_detail or "")
    # Users see the plain reason only, in the API and in the event.
    page = (
        await ai.client.get(f"/api/v1/sessions/{chat['id']}/messages", headers=ai.user.headers)
    ).json()
    shown = next(m for m in page["items"] if m["id"] == ai_id)
    assert shown["error"] == REFUSED
    assert "failure_detail" not in shown
    failed = [e for e in await user_events(ai.redis, ai.user.id) if e.type == "message.failed"]
    assert failed[-1].data["error"] == REFUSED
    assert "no-such-model" not in str(failed[-1].data)


async def test_429_retry_after_is_honoured_then_gives_up(
    ai: Harness,
    openai_server: OpenAIServer,
) -> None:
    await use_openai(ai.engine)
    openai_server.scripts = [Script(status=429, headers={"Retry-After": "1"})]
    provider = openai_provider(openai_server)
    loop = asyncio.get_running_loop()
    try:
        chat = await start_session(ai.client, ai.user)
        pair = await send(ai.client, ai.user, chat["id"], "Hi")
        ai_id = pair["ai_message"]["id"]
        started = loop.time()
        result = await ReplyRun(ai.deps(provider), UUID(ai_id)).execute()
        elapsed = loop.time() - started
    finally:
        await provider.close()
        await use_offline(ai.engine)
    retries = ai.settings.ai.provider_retries
    assert result["outcome"] == "failed"
    assert result["reason"] == "http_429"
    assert len(openai_server.requests) == retries + 1
    # Each retry waited the server's Retry-After (1 s), not the 50 ms backoff of the settings.
    assert elapsed >= retries * 1.0
    row = await stored(ai.engine, ai_id)
    assert row.error == UNAVAILABLE


async def test_a_superseded_run_writes_nothing(
    ai: Harness,
    openai_server: OpenAIServer,
) -> None:
    """Two runs of one message (a zombie and its replacement): exactly one reply is stored."""
    await use_openai(ai.engine)
    openai_server.scripts = [
        Script(pieces=["slow", " zombie"], piece_delay=0.4),
        Script(pieces=["fresh"]),
    ]
    provider = openai_provider(openai_server)
    try:
        chat = await start_session(ai.client, ai.user)
        pair = await send(ai.client, ai.user, chat["id"], "Hi")
        ai_id = UUID(pair["ai_message"]["id"])
        deps = ai.deps(provider)
        zombie = asyncio.create_task(ReplyRun(deps, ai_id).execute())

        async def zombie_asked() -> bool:
            # Its request is in once it has claimed the message and taken the slow script.
            return bool(openai_server.requests)

        await eventually(zombie_asked, 10, "the zombie's request to the model")
        fresh = await ReplyRun(deps, ai_id).execute()
        late = await zombie
    finally:
        await provider.close()
        await use_offline(ai.engine)
    assert fresh["outcome"] == "done"
    assert late["outcome"] == "superseded"
    row = await stored(ai.engine, str(ai_id))
    assert row.content == "fresh"
    assert row.attempts == 2
    completed = [
        e for e in await user_events(ai.redis, ai.user.id) if e.type == "message.completed"
    ]
    assert len(completed) == 1


async def test_the_attempt_budget_fails_the_message(
    ai: Harness,
) -> None:
    chat = await start_session(ai.client, ai.user)
    pair = await send(ai.client, ai.user, chat["id"], "Hi")
    ai_id = pair["ai_message"]["id"]
    async with ai.engine.begin() as connection:
        await connection.execute(
            update(Message)
            .where(Message.id == UUID(ai_id))
            .values(
                processing_status=ProcessingStatus.PROCESSING,
                attempts=ai.settings.ai.max_attempts,
            )
        )
    result = await ReplyRun(ai.deps(), UUID(ai_id)).execute()
    assert result["outcome"] == "given-up"
    row = await stored(ai.engine, ai_id)
    assert (row.processing_status, row.error) == (ProcessingStatus.FAILED, GAVE_UP)
    failed = [e for e in await user_events(ai.redis, ai.user.id) if e.type == "message.failed"]
    assert [e.data["id"] for e in failed] == [ai_id]


async def test_openai_selected_without_an_endpoint_fails_plainly(ai: Harness) -> None:
    await use_openai(ai.engine)
    try:
        chat = await start_session(ai.client, ai.user)
        pair = await send(ai.client, ai.user, chat["id"], "Hi")
        ai_id = pair["ai_message"]["id"]
        result = await ReplyRun(ai.deps(openai=None), UUID(ai_id)).execute()
    finally:
        await use_offline(ai.engine)
    assert result["reason"] == "not_configured"
    row = await stored(ai.engine, ai_id)
    assert row.error == REFUSED
    assert "ai.openai.base_url" in (row.failure_detail or "")


async def test_the_prompt_carries_profile_tone_preferences_and_history(
    ai: Harness, openai_server: OpenAIServer
) -> None:
    headers = ai.user.headers
    settings = {"reply_length": "short", "language": "pt-BR"}
    assert (await ai.client.put("/api/v1/me/settings", json=settings, headers=headers)).is_success
    profile = await ai.client.post(
        "/api/v1/profiles",
        json={
            "name": "Sam",
            "notes": "Met at the climbing gym",
            "interests": ["bouldering", "jazz"],
        },
        headers=headers,
    )
    assert profile.status_code == 201, profile.text
    tone_id = await add_tone(ai.engine)
    chat = await start_session(
        ai.client, ai.user, profile_id=profile.json()["id"], tone_id=str(tone_id)
    )
    first = await send(ai.client, ai.user, chat["id"], "Hi there")
    assert (await ReplyRun(ai.deps(), UUID(first["ai_message"]["id"])).execute())["outcome"] == (
        "done"
    )
    earlier_reply = (await stored(ai.engine, first["ai_message"]["id"])).content
    second = await send(ai.client, ai.user, chat["id"], "Shall we climb on Friday?")
    await use_openai(ai.engine)
    openai_server.scripts = [Script(pieces=["Yes!"])]
    provider = openai_provider(openai_server)
    try:
        result = await ReplyRun(ai.deps(provider), UUID(second["ai_message"]["id"])).execute()
    finally:
        await provider.close()
        await use_offline(ai.engine)
    assert result["outcome"] == "done"
    system, *history = openai_server.requests[-1]["messages"]
    assert system["role"] == "system"
    for part in (
        "The user is talking to Sam.",
        "About Sam: Met at the climbing gym",
        "Sam's interests: bouldering, jazz.",
        "Tone (Test tone): Be kind.",
        LENGTH_GUIDANCE[ReplyLength.SHORT],
        "BCP 47 tag pt-BR",
    ):
        assert part in system["content"], (part, system["content"])
    assert history == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": earlier_reply},
        {"role": "user", "content": "Shall we climb on Friday?"},
    ]


async def test_a_bare_session_gets_the_default_prompt(
    ai: Harness, openai_server: OpenAIServer
) -> None:
    chat = await start_session(ai.client, ai.user)
    pair = await send(ai.client, ai.user, chat["id"], "Hello?")
    await use_openai(ai.engine)
    openai_server.scripts = [Script(pieces=["Hi"])]
    provider = openai_provider(openai_server)
    try:
        await ReplyRun(ai.deps(provider), UUID(pair["ai_message"]["id"])).execute()
    finally:
        await provider.close()
        await use_offline(ai.engine)
    system = openai_server.requests[-1]["messages"][0]["content"]
    assert "talking to" not in system
    assert "Tone (" not in system
    assert LENGTH_GUIDANCE[ReplyLength.MEDIUM] in system
    assert "Write in the language of the conversation." in system
