"""The session detail costs the same few statements whatever the page size."""

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


async def statements_for(
    client: AsyncTestClient[Litestar], app: Litestar, url: str, caller: Caller
) -> int:
    executed: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        executed.append(statement)

    engine = app.state.alchemy.get_engine().sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        response = await client.get(url, headers=caller.headers)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 200, response.text
    return len(executed)


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
