"""Statements per request: the session detail costs the same few whatever the page size, a
message page is one statement, and a message post is one statement that reads nothing back."""

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
from tests.support.backends import backend_query
from wingman.db.models import Message, MessageSender, ProcessingStatus, utcnow
from wingman.server.app_resources import app_resources


async def statements_of(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    method: str,
    url: str,
    caller: Caller,
    *,
    body: dict[str, Any] | None = None,
    status: int = 200,
    backends: list[int] | None = None,
) -> list[str]:
    """The statements the request ran; the backends (server processes) that ran them are
    appended to ``backends``."""
    backends = [] if backends is None else backends
    executed: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        executed.append(statement)
        backends.append(conn.connection.driver_connection.info.backend_pid)

    engine = app_resources(app).alchemy.get_engine().sync_engine
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
    # Warm the per-process caller status cache.
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


async def test_a_message_post_is_one_statement_that_commits_by_itself(
    app: Litestar, client: AsyncTestClient[Litestar], alice: Caller, engine: AsyncEngine
) -> None:
    chat = await new_session(client, alice)
    url = f"/api/v1/sessions/{chat['id']}/messages"
    # Warm the per-process caches (caller status, last seen, global config).
    await client.post(url, json={"content": "warm-up"}, headers=alice.headers)

    backends: list[int] = []
    executed = await statements_of(
        client,
        app,
        "POST",
        url,
        alice,
        body={"content": "How was your weekend?"},
        status=202,
        backends=backends,
    )
    # One statement: the ownership check, both messages, the session's counters, returned.
    assert len(executed) == 1, executed
    assert executed[0].split(None, 1)[0].upper() == "WITH", executed
    # In autocommit: in a transaction the backend's last statement would be COMMIT.
    last, state = await backend_query(engine, backends[0])
    assert last.split(None, 1)[0].upper() == "WITH", last
    assert state == "idle"
    detail = (await client.get(f"/api/v1/sessions/{chat['id']}", headers=alice.headers)).json()
    assert detail["session"]["message_count"] == 4


async def test_a_message_page_is_one_statement_with_its_ownership_check(
    app: Litestar, client: AsyncTestClient[Litestar], alice: Caller, bob: Caller
) -> None:
    """The page reads the caller's session's messages in one statement; only an empty page
    costs a second, to tell an empty session from somebody else's (404 either way for Bob)."""
    chat = await new_session(client, alice)
    url = f"/api/v1/sessions/{chat['id']}/messages"
    await client.get(url, headers=alice.headers)  # warm the per-process caches

    empty = await statements_of(client, app, "GET", url, alice)
    assert len(empty) == 2, empty
    await client.post(url, json={"content": "Hello"}, headers=alice.headers)
    full = await statements_of(client, app, "GET", url, alice)
    assert len(full) == 1, full
    assert "chat_sessions" in full[0]
    body = (await client.get(url, headers=alice.headers)).json()
    assert [(m["sender"], m["processing_status"]) for m in body["items"]] == [
        ("ai", "queued"),
        ("user", "done"),
    ]
    assert set(body["items"][1]) == {
        "id",
        "session_id",
        "sender",
        "content",
        "processing_status",
        "error",
        "reply_to_id",
        "idempotency_key",
        "created_at",
        "completed_at",
    }
    refused = await client.get(url, headers=bob.headers)
    assert refused.status_code == 404
    assert refused.json()["type"].endswith(":session-not-found")
