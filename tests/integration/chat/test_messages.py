"""Messages: the user/AI pair, idempotency, content limits, exact counters, paging, events."""

from __future__ import annotations

import asyncio

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.chat.conftest import new_session, post_message
from tests.support.accounts import Caller, create_caller
from wingman.config import Settings
from wingman.db.models import GlobalConfig, Message, UserTier
from wingman.domain.catalog.registry import MessageLimits
from wingman.server.app_resources import app_resources

SESSIONS = "/api/v1/sessions"


async def test_post_stores_user_and_queued_ai_message(
    client: AsyncTestClient[Litestar], alice: Caller
) -> None:
    chat = await new_session(client, alice)
    pair = await post_message(client, alice, chat["id"], content="What do I say next?")
    user, ai = pair["user_message"], pair["ai_message"]
    assert (user["sender"], user["processing_status"], user["content"]) == (
        "user",
        "done",
        "What do I say next?",
    )
    assert (ai["sender"], ai["processing_status"], ai["content"]) == ("ai", "queued", "")
    assert ai["reply_to_id"] == user["id"]

    detail = (await client.get(f"{SESSIONS}/{chat['id']}", headers=alice.headers)).json()
    assert detail["session"]["message_count"] == 2
    assert detail["session"]["last_message_at"] is not None
    assert detail["session"]["updated_at"] > chat["updated_at"]
    assert [m["id"] for m in detail["messages"]["items"]] == [ai["id"], user["id"]]


async def test_idempotency_key_replays_the_pair(
    client: AsyncTestClient[Litestar], alice: Caller, engine: AsyncEngine
) -> None:
    chat = await new_session(client, alice)
    url = f"{SESSIONS}/{chat['id']}/messages"
    body = {"content": "hello", "idempotency_key": "k-1"}
    first = await client.post(url, json=body, headers=alice.headers)
    assert first.status_code == 202
    again = await client.post(url, json=body, headers=alice.headers)
    assert again.status_code == 200
    assert again.json() == first.json()

    # Two concurrent posts with one new key: one pair between them.
    racing = {"content": "race", "idempotency_key": "k-2"}
    answers = await asyncio.gather(
        *(client.post(url, json=racing, headers=alice.headers) for _ in range(2))
    )
    assert sorted(a.status_code for a in answers) == [200, 202]
    assert answers[0].json() == answers[1].json()

    async with engine.connect() as connection:
        stored = await connection.scalar(
            select(func.count()).select_from(Message).where(Message.session_id == chat["id"])
        )
    assert stored == 4
    detail = (await client.get(f"{SESSIONS}/{chat['id']}", headers=alice.headers)).json()
    assert detail["session"]["message_count"] == 4


async def test_content_limits(
    client: AsyncTestClient[Litestar], alice: Caller, engine: AsyncEngine
) -> None:
    chat = await new_session(client, alice)
    url = f"{SESSIONS}/{chat['id']}/messages"
    limit = MessageLimits().max_content_length
    for content in ["", "   \n\t", "x" * (limit + 1)]:
        response = await client.post(url, json={"content": content}, headers=alice.headers)
        assert response.status_code in (400, 422), response.text
        problem = response.json()
        assert problem["type"] == "urn:wingman:problem:validation-failed"
        assert "content" in [error["key"] for error in problem["errors"]]
    longest = await client.post(url, json={"content": "y" * limit}, headers=alice.headers)
    assert longest.status_code == 202


async def test_content_limit_comes_from_config(
    app: Litestar, client: AsyncTestClient[Litestar], alice: Caller, engine: AsyncEngine
) -> None:
    chat = await new_session(client, alice)
    url = f"{SESSIONS}/{chat['id']}/messages"
    async with engine.begin() as connection:
        await connection.execute(
            insert(GlobalConfig).values(key="limits.message", value={"max_content_length": 10})
        )
    app_resources(app).catalog.drop()
    try:
        over = await client.post(url, json={"content": "x" * 11}, headers=alice.headers)
        assert over.status_code == 422, over.text
        assert over.json()["errors"][0]["key"] == "content"
        at_limit = await client.post(url, json={"content": "x" * 10}, headers=alice.headers)
        assert at_limit.status_code == 202
    finally:
        async with engine.begin() as connection:
            await connection.execute(
                delete(GlobalConfig).where(GlobalConfig.key == "limits.message")
            )
        app_resources(app).catalog.drop()


async def test_counters_exact_under_concurrent_posts(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, settings: Settings
) -> None:
    # Premium: 50 posts at once stay inside its ai quota (100/minute; the free tier has 20).
    alice = await create_caller(engine, settings, tier=UserTier.PREMIUM)
    chat = await new_session(client, alice)
    url = f"{SESSIONS}/{chat['id']}/messages"
    answers = await asyncio.gather(
        *(client.post(url, json={"content": f"m{n}"}, headers=alice.headers) for n in range(50))
    )
    assert [a.status_code for a in answers] == [202] * 50
    detail = (await client.get(f"{SESSIONS}/{chat['id']}", headers=alice.headers)).json()
    assert detail["session"]["message_count"] == 100
    newest = max(a.json()["user_message"]["created_at"] for a in answers)
    assert detail["session"]["last_message_at"] >= newest


async def test_message_pages_newest_first(client: AsyncTestClient[Litestar], alice: Caller) -> None:
    chat = await new_session(client, alice)
    expected: list[str] = []
    for n in range(4):
        pair = await post_message(client, alice, chat["id"], content=f"m{n}")
        expected[:0] = [pair["ai_message"]["id"], pair["user_message"]["id"]]
    seen: list[str] = []
    before = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if before:
            params["before"] = before
        page = (
            await client.get(
                f"{SESSIONS}/{chat['id']}/messages", params=params, headers=alice.headers
            )
        ).json()
        seen += [m["id"] for m in page["items"]]
        before = page["next_cursor"]
        if before is None:
            break
    assert seen == expected


async def test_feedback_events(client: AsyncTestClient[Litestar], alice: Caller) -> None:
    chat = await new_session(client, alice)
    other = await new_session(client, alice)
    pair = await post_message(client, alice, chat["id"], content="hi")
    foreign = await post_message(client, alice, other["id"], content="elsewhere")
    url = f"{SESSIONS}/{chat['id']}/events"

    liked = await client.post(
        url,
        json={"type": "liked", "message_id": pair["ai_message"]["id"], "payload": {"n": 1}},
        headers=alice.headers,
    )
    assert liked.status_code == 201, liked.text
    assert liked.json()["type"] == "liked"
    assert liked.json()["payload"] == {"n": 1}
    session_wide = await client.post(url, json={"type": "copied"}, headers=alice.headers)
    assert session_wide.status_code == 201
    assert session_wide.json()["message_id"] is None

    wrong_session = await client.post(
        url,
        json={"type": "sent", "message_id": foreign["user_message"]["id"]},
        headers=alice.headers,
    )
    assert wrong_session.status_code == 404
    assert wrong_session.json()["type"] == "urn:wingman:problem:message-not-found"
    unknown_type = await client.post(url, json={"type": "shared"}, headers=alice.headers)
    assert unknown_type.status_code == 400
    assert "type" in [error["key"] for error in unknown_type.json()["errors"]]
