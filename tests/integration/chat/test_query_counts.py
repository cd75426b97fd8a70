"""Statements per request: the session detail costs the same few whatever the page size, and a
message post reads nothing back after its inserts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.integration.chat.conftest import add_tone, new_session
from tests.support.accounts import Caller
from wingman.db.models import Message, MessageSender, ProcessingStatus, utcnow


async def statements_of(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    method: str,
    url: str,
    caller: Caller,
    *,
    body: dict[str, Any] | None = None,
    status: int = 200,
) -> list[str]:
    executed: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        executed.append(statement)

    engine = app.state.alchemy.get_engine().sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        response = await client.request(method, url, json=body, headers=caller.headers)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == status, response.text
    return executed


async def statements_for(
    client: AsyncTestClient[Litestar], app: Litestar, url: str, caller: Caller
) -> int:
    return len(await statements_of(client, app, "GET", url, caller))


async def test_detail_queries_do_not_grow_with_page_size(
    app: Litestar, client: AsyncTestClient[Litestar], alice: Caller, engine: AsyncEngine
) -> None:
    tone_id = str(await add_tone(engine))
    profile = (
        await client.post("/api/v1/profiles", json={"name": "Q"}, headers=alice.headers)
    ).json()
    chat = await new_session(client, alice, profile_id=profile["id"], tone_id=tone_id)
    start = utcnow()
    async with engine.begin() as connection:
        await connection.execute(
            insert(Message),
            [
                {
                    "id": uuid7(),
                    "session_id": chat["id"],
                    "sender": MessageSender.USER,
                    "content": f"m{n}",
                    "processing_status": ProcessingStatus.DONE,
                    "created_at": start + timedelta(milliseconds=n),
                }
                for n in range(60)
            ],
        )
    url = f"/api/v1/sessions/{chat['id']}"
    # Warm the per-process caller status cache and the last-seen write.
    await client.get(url, headers=alice.headers)

    small = await statements_for(client, app, f"{url}?limit=1", alice)
    large = await statements_for(client, app, f"{url}?limit=50", alice)
    assert small == large
    # The session joined with profile and tone, then the message page.
    assert large <= 2
    body = (await client.get(f"{url}?limit=50", headers=alice.headers)).json()
    assert len(body["messages"]["items"]) == 50
    assert body["tone"]["id"] == tone_id
    assert body["profile"]["name"] == "Q"


async def test_a_message_post_reads_nothing_back(
    app: Litestar, client: AsyncTestClient[Litestar], alice: Caller
) -> None:
    chat = await new_session(client, alice)
    url = f"/api/v1/sessions/{chat['id']}/messages"
    # Warm the per-process caches (caller status, last seen, global config).
    await client.post(url, json={"content": "warm-up"}, headers=alice.headers)

    executed = await statements_of(
        client, app, "POST", url, alice, body={"content": "How was your weekend?"}, status=202
    )
    kinds = [statement.split(None, 1)[0].upper() for statement in executed]
    # The session check, both messages (each INSERT returns its row), the session's counters.
    assert kinds == ["SELECT", "INSERT", "INSERT", "UPDATE"], executed
