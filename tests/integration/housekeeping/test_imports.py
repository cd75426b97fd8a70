"""Transcript imports through the API and a real heavy worker: all or nothing, scoped, capped.

The round trip reads the messages back through ``GET /sessions/{id}/messages`` (what a client
sees of an import).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import anyio
import msgspec
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.integration.housekeeping.conftest import MAX_IMPORT_BYTES
from tests.support.accounts import Caller
from tests.support.events import events_of
from tests.support.jobs import wait_until_done
from wingman.config import Settings
from wingman.db.models import ImportFormat, Message, SessionImport, utcnow
from wingman.domain.imports.jobs import GAVE_UP
from wingman.domain.imports.schemas import ImportOut
from wingman.domain.imports.storage import imports_folder, upload_path
from wingman.queues import create_queue, enqueue

Client = AsyncTestClient[Litestar]
ME = "Me"

contents = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\x00"),
    min_size=1,
    max_size=40,
).filter(lambda text: text == text.strip() and bool(text))
names = st.sampled_from(["Ann", "Bo Li", "Zoë", "Me too"])
transcripts = st.lists(st.tuples(st.booleans(), contents, names), min_size=1, max_size=25)


async def new_session(client: Client, caller: Caller) -> str:
    response = await client.post("/api/v1/sessions", json={}, headers=caller.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def upload(client: Client, caller: Caller, session_id: str, body: bytes, kind: str) -> Any:
    return await client.post(
        f"/api/v1/sessions/{session_id}/imports",
        params={"format": kind, "me": ME},
        content=body,
        headers={**caller.headers, "Content-Type": "application/octet-stream"},
    )


async def finished(client: Client, caller: Caller, session_id: str, import_id: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(
            f"/api/v1/sessions/{session_id}/imports/{import_id}", headers=caller.headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] != "queued":
            return body
        assert time.monotonic() < deadline, f"import {import_id} still queued"
        await asyncio.sleep(0.05)


async def announced_imports(redis: Redis, caller: Caller) -> dict[str, ImportOut]:
    """The ``import.finished`` events the caller's clients were sent, by import id."""
    return {
        str(event.data["id"]): msgspec.convert(event.data, ImportOut, strict=False)
        for event in await events_of(redis, caller.id, "import.finished")
    }


async def read_back(client: Client, caller: Caller, session_id: str) -> list[tuple[str, str]]:
    """Every message of the session, oldest first, as (sender, content)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["before"] = cursor
        response = await client.get(
            f"/api/v1/sessions/{session_id}/messages", params=params, headers=caller.headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return [(item["sender"], item["content"]) for item in reversed(items)]


def as_text(lines: list[tuple[bool, str, str]]) -> bytes:
    return "".join(f"{ME if mine else name}: {content}\n" for mine, content, name in lines).encode()


def as_telegram(lines: list[tuple[bool, str, str]]) -> bytes:
    messages: list[dict[str, Any]] = [{"id": 0, "type": "service", "action": "create_group"}]
    for number, (mine, content, name) in enumerate(lines, start=1):
        # Odd messages carry their text as entities, as Telegram does for formatted text.
        half = len(content) // 2
        text: Any = (
            content
            if number % 2 == 0
            else [content[:half], {"type": "bold", "text": content[half:]}]
        )
        messages.append(
            {"id": number, "type": "message", "from": ME if mine else name, "text": text}
        )
    document = {"name": "Ann", "type": "personal_chat", "id": 1, "messages": messages}
    return json.dumps(document, ensure_ascii=False, indent=1).encode()


@hypothesis_settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=transcripts, kind=st.sampled_from(["text", "telegram"]))
async def test_an_import_reads_back_as_the_transcript(
    *,
    hk_client: Client,
    owner: Caller,
    hk_redis: Redis,
    heavy_worker: subprocess.Popen[bytes],
    lines: list[tuple[bool, str, str]],
    kind: str,
) -> None:
    session_id = await new_session(hk_client, owner)
    body = as_text(lines) if kind == "text" else as_telegram(lines)
    response = await upload(hk_client, owner, session_id, body, kind)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    done = await finished(hk_client, owner, session_id, response.json()["id"])
    assert done["status"] == "done", done["errors"]
    assert done["message_count"] == len(lines)
    expected = [("user" if mine else "contact", content) for mine, content, _ in lines]
    assert await read_back(hk_client, owner, session_id) == expected
    session = await hk_client.get(f"/api/v1/sessions/{session_id}", headers=owner.headers)
    assert session.json()["session"]["message_count"] == len(lines)
    # The client is told on the WebSocket, with what GET /imports/{id} shows.
    announced = await announced_imports(hk_redis, owner)
    assert msgspec.to_builtins(announced[done["id"]]) == done


async def test_malformed_transcripts_name_their_lines_and_store_nothing(
    hk_client: Client,
    owner: Caller,
    heavy_worker: subprocess.Popen[bytes],
    hk_engine: AsyncEngine,
    hk_redis: Redis,
) -> None:
    cases = [
        ("text", b"Me: hello\nno separator here\n\nAnn: fine\nAnn:   \n", [2, 5]),
        ("text", b"Me: ok\nAnn: caf\xc3\n", [2]),
        ("telegram", b'{"messages": [\n{"from": "Me", "text": "hi"},\n', [3]),
        (
            "telegram",
            json.dumps(
                {"messages": [{"from": "Me", "text": "hi"}, {"from": 7, "text": "x"}, "nope"]}
            ).encode(),
            [2, 3],
        ),
    ]
    for kind, body, bad_lines in cases:
        session_id = await new_session(hk_client, owner)
        response = await upload(hk_client, owner, session_id, body, kind)
        assert response.status_code == 202, response.text
        done = await finished(hk_client, owner, session_id, response.json()["id"])
        assert done["status"] == "failed", (kind, body)
        assert [error["line"] for error in done["errors"]] == bad_lines, done["errors"]
        assert all(error["message"] for error in done["errors"])
        assert done["message_count"] == 0
        announced = (await announced_imports(hk_redis, owner))[done["id"]]
        assert announced.status == "failed"
        assert [error.line for error in announced.errors] == bad_lines
        async with hk_engine.connect() as connection:
            stored = await connection.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.session_id == UUID(session_id))
            )
        assert stored == 0


async def test_an_upload_over_the_cap_is_refused_and_leaves_nothing(
    hk_client: Client, owner: Caller, hk_settings: Settings, hk_engine: AsyncEngine
) -> None:
    session_id = await new_session(hk_client, owner)
    before = set(os.listdir(imports_folder(hk_settings)))
    line = b"Ann: " + b"x" * 95 + b"\n"
    body = line * (MAX_IMPORT_BYTES // len(line) + 1)
    response = await upload(hk_client, owner, session_id, body, "text")
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("import-too-large")

    # A Content-Length under the cap does not get a larger body through: bytes are counted.
    streamed = await hk_client.post(
        f"/api/v1/sessions/{session_id}/imports",
        params={"format": "text", "me": ME},
        content=body,
        headers={**owner.headers, "Content-Length": "100"},
    )
    assert streamed.status_code == 413
    assert set(os.listdir(imports_folder(hk_settings))) == before
    async with hk_engine.connect() as connection:
        rows = await connection.scalar(
            select(func.count())
            .select_from(SessionImport)
            .where(SessionImport.session_id == UUID(session_id))
        )
    assert rows == 0


async def test_another_users_session_and_import_are_not_found(
    hk_client: Client, owner: Caller, stranger: Caller, heavy_worker: subprocess.Popen[bytes]
) -> None:
    session_id = await new_session(hk_client, owner)
    theirs = await upload(hk_client, stranger, session_id, b"Me: hi\n", "text")
    assert theirs.status_code == 404
    mine = await upload(hk_client, owner, session_id, b"Me: hi\n", "text")
    assert mine.status_code == 202
    import_id = mine.json()["id"]
    peek = await hk_client.get(
        f"/api/v1/sessions/{session_id}/imports/{import_id}", headers=stranger.headers
    )
    assert peek.status_code == 404
    elsewhere = await new_session(hk_client, owner)
    wrong_session = await hk_client.get(
        f"/api/v1/sessions/{elsewhere}/imports/{import_id}", headers=owner.headers
    )
    assert wrong_session.status_code == 404
    bad_format = await upload(hk_client, owner, session_id, b"Me: hi\n", "whatsapp")
    assert bad_format.status_code == 400
    for me in ("", "   ", "a\x00b", "x" * 101):
        bad_me = await hk_client.post(
            f"/api/v1/sessions/{session_id}/imports",
            params={"format": "text", "me": me},
            content=b"Me: hi\n",
            headers=owner.headers,
        )
        assert bad_me.status_code == 400, (me, bad_me.text)
    empty = await upload(hk_client, owner, session_id, b"", "text")
    assert empty.status_code == 422


async def test_imports_can_be_switched_off(
    hk_client: Client, owner: Caller, operator: Caller
) -> None:
    session_id = await new_session(hk_client, owner)
    features = "/api/v1/admin/config/features"
    off = await hk_client.put(
        features, json={"transcript_imports": False}, headers=operator.headers
    )
    assert off.status_code == 200, off.text
    try:
        refused = await upload(hk_client, owner, session_id, b"Me: hi\n", "text")
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("feature-disabled")
    finally:
        back = await hk_client.put(features, json={}, headers=operator.headers)
        assert back.status_code == 200
    assert (await upload(hk_client, owner, session_id, b"Me: hi\n", "text")).status_code == 202


async def test_a_lost_import_is_enqueued_again_and_stray_files_removed(
    *,
    hk_client: Client,
    owner: Caller,
    hk_redis: Redis,
    hk_settings: Settings,
    hk_engine: AsyncEngine,
    heavy_worker: subprocess.Popen[bytes],
) -> None:
    session_id = UUID(await new_session(hk_client, owner))
    lost, hopeless = UUID(str(uuid7())), UUID(str(uuid7()))
    body = b"Me: still here\nAnn: good\n"
    folder = imports_folder(hk_settings)
    folder.mkdir(parents=True, exist_ok=True)
    upload_path(hk_settings, lost).write_bytes(body)
    stray = folder / f"{uuid7()}.part"
    stray.write_bytes(b"half")
    old = time.time() - hk_settings.imports.stale_after_seconds - 60
    os.utime(stray, (old, old))
    async with hk_engine.begin() as connection:
        await connection.execute(
            insert(SessionImport).values(
                id=lost,
                session_id=session_id,
                user_id=owner.id,
                format=ImportFormat.TEXT,
                me=ME,
                size_bytes=len(body),
            )
        )
        # Uploaded long ago and never enqueued (its enqueue failed).
        await connection.execute(
            update(SessionImport)
            .where(SessionImport.id == lost)
            .values(created_at=utcnow() - timedelta(hours=1))
        )
        # Queued for two days: every run of it failed; it is given up.
        await connection.execute(
            insert(SessionImport).values(
                id=hopeless,
                session_id=session_id,
                user_id=owner.id,
                format=ImportFormat.TEXT,
                me=ME,
                size_bytes=1,
                created_at=utcnow() - timedelta(days=2),
            )
        )
    queue = create_queue(hk_settings, "heavy")
    try:
        job = await enqueue(queue, hk_settings, "reconcile_imports")
        assert job is not None
        await wait_until_done(job)
    finally:
        await queue.disconnect()
    # Outcomes, not this run's counts: the worker's own once-a-minute run may have come first.
    assert job.status == "complete", job.error
    gave_up = await finished(hk_client, owner, str(session_id), str(hopeless))
    assert gave_up["status"] == "failed"
    assert gave_up["errors"] == [{"line": 0, "message": GAVE_UP}]
    announced = await announced_imports(hk_redis, owner)
    assert msgspec.to_builtins(announced[str(hopeless)]) == gave_up
    assert not stray.exists()
    done = await finished(hk_client, owner, str(session_id), str(lost))
    assert done["status"] == "done"
    assert done["message_count"] == 2
    assert not await anyio.Path(upload_path(hk_settings, lost)).exists()
