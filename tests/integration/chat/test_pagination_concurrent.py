"""Paging while rows are inserted returns every pre-existing row exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.integration.chat.conftest import new_session, post_message
from tests.support.accounts import Caller
from wingman.db.models import ChatSession, Message, MessageSender, ProcessingStatus, utcnow


async def walk(
    client: AsyncTestClient[Litestar], caller: Caller, url: str, param: str
) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params[param] = cursor
        response = await client.get(url, params=params, headers=caller.headers)
        assert response.status_code == 200, response.text
        seen += [item["id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return seen
        await asyncio.sleep(0)


async def test_sessions_and_messages_exactly_once_under_inserts(
    client: AsyncTestClient[Litestar], alice: Caller, engine: AsyncEngine
) -> None:
    existing = [(await new_session(client, alice))["id"] for _ in range(20)]
    chat_id = existing[-1]
    messages: list[str] = []
    for n in range(10):
        pair = await post_message(client, alice, chat_id, content=f"old {n}")
        messages += [pair["user_message"]["id"], pair["ai_message"]["id"]]
    stop = asyncio.Event()

    async def insert_rows() -> int:
        # Straight into the database on its own connections, so the writer runs alongside the
        # paging requests rather than taking turns with them in the test client.
        added = 0
        while not stop.is_set() and added < 200:
            now = utcnow()
            async with engine.begin() as connection:
                await connection.execute(
                    insert(ChatSession).values(id=uuid7(), user_id=alice.id, updated_at=now)
                )
                await connection.execute(
                    insert(Message).values(
                        id=uuid7(),
                        session_id=chat_id,
                        sender=MessageSender.USER,
                        content="new",
                        processing_status=ProcessingStatus.DONE,
                        created_at=now,
                    )
                )
            added += 1
            await asyncio.sleep(0.002)
        return added

    writer = asyncio.create_task(insert_rows())
    try:
        sessions_seen = await walk(client, alice, "/api/v1/sessions", "cursor")
        messages_seen = await walk(client, alice, f"/api/v1/sessions/{chat_id}/messages", "before")
    finally:
        stop.set()
        added = await writer
    assert added > 0

    counts = Counter(sessions_seen)
    assert all(counts[s] == 1 for s in existing)
    assert max(counts.values()) == 1
    message_counts = Counter(messages_seen)
    assert all(message_counts[m] == 1 for m in messages)
    assert max(message_counts.values()) == 1
