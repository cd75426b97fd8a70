"""Real frames from a real socket match the AsyncAPI document the same server serves.

The app runs under Granian (tests/integration/realtime/conftest.py); its events come from the
code that sends them in production: REST posts a message (``message.created``), the reply run
streams and stores it (``message.delta``, ``message.completed``), regenerate then cancel
(``message.created``, ``message.failed``), an account change (``account_updated``), and the
socket's own control frames. Every frame received is validated against the schema of its
message in ``/api/docs/asyncapi.json``, and every event type and control frame must be seen.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
import jsonschema_rs
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from tests.integration.ai.conftest import make_deps
from tests.integration.realtime.conftest import REALTIME, open_socket, receive, send, serving
from tests.support.accounts import Caller
from wingman.config import Settings
from wingman.db.models import GlobalConfig, ImportFormat, ImportStatus
from wingman.domain.ai.generation import ReplyRun
from wingman.domain.imports.schemas import ImportOut, ImportProblem
from wingman.domain.realtime.account_changes import announce_account_change
from wingman.domain.realtime.event_frames import (
    SERVER_EVENTS,
    ExportReady,
    ExportReadyData,
    ImportFinished,
)
from wingman.domain.realtime.protocol import CLIENT_FRAMES, SERVER_CONTROL_FRAMES


class Documented:
    """The served document's message schemas: for frames sent, by ``type`` and whether they are
    events (``ping`` is also a client frame, told apart by direction)."""

    def __init__(self, document: dict[str, Any]) -> None:
        components = document["components"]
        self.validators: dict[tuple[str, str], Any] = {}
        for operation in document["operations"].values():
            for ref in operation["messages"]:
                name = ref["$ref"].rsplit("/", 1)[1]
                message = components["messages"][name]
                schema = {"$ref": message["payload"]["$ref"], "components": components}
                event = "event_id" in components["schemas"][name]["properties"]
                kind = "event" if event else operation["action"]
                self.validators[(kind, message["name"])] = jsonschema_rs.validator_for(schema)

    def check(self, kind: str, frame: dict[str, Any]) -> None:
        validator = self.validators[(kind, frame["type"])]
        errors = [error.message for error in validator.iter_errors(frame)]
        assert errors == [], (frame, errors)


def token_of(caller: Caller) -> str:
    return caller.headers["Authorization"].removeprefix("Bearer ")


async def use_offline(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            GlobalConfig.__table__.delete().where(GlobalConfig.key == "ai")  # type: ignore[attr-defined]
        )


async def read_until(
    ws: ClientConnection, seen: list[dict[str, Any]], wanted: set[str], within: float = 10.0
) -> None:
    """Receive into ``seen`` until every type in ``wanted`` has arrived."""
    deadline = time.monotonic() + within
    while not wanted <= {frame["type"] for frame in seen}:
        seen.append(await receive(ws, max(0.1, deadline - time.monotonic())))


async def test_real_frames_validate_against_the_served_document(
    ai_settings: Settings, ai_engine: AsyncEngine, ai_redis: Any, user: Caller
) -> None:
    settings = msgspec.structs.replace(ai_settings, realtime=REALTIME)
    await use_offline(ai_engine)
    async with serving(settings) as ws_url:
        port = urlsplit(ws_url).port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            served = await http.get("/api/docs/asyncapi.json")
            assert served.status_code == 200
            documented = Documented(served.json())
            sent: list[dict[str, Any]] = []
            async with (
                open_socket(ws_url, token_of(user)) as ws,
                open_socket(ws_url) as by_frame,
            ):
                # A socket authenticated by its first frame, resuming from an id never issued.
                for frame in (
                    {"type": "auth", "token": token_of(user), "last_event_id": 2**52},
                    {"type": "ping"},
                    {"type": "pong"},
                ):
                    sent.append(frame)
                    await send(by_frame, frame)
                other: list[dict[str, Any]] = []
                await read_until(by_frame, other, {"hello", "resync_required", "pong"})

                seen: list[dict[str, Any]] = []
                await read_until(ws, seen, {"hello"})
                for frame in ({"type": "resume", "last_event_id": None}, {"type": "ping"}):
                    sent.append(frame)
                    await send(ws, frame)
                await read_until(ws, seen, {"resumed", "pong"})
                sent.append({"type": "auth", "token": token_of(user)})
                await send(ws, sent[-1])

                chat = await http.post("/api/v1/sessions", json={}, headers=user.headers)
                assert chat.status_code == 201, chat.text
                pair = await http.post(
                    f"/api/v1/sessions/{chat.json()['id']}/messages",
                    json={"content": "We met at the climbing gym last week"},
                    headers=user.headers,
                )
                assert pair.status_code == 202, pair.text
                ai_id = pair.json()["ai_message"]["id"]
                deps = make_deps(settings, ai_engine, ai_redis)
                assert (await ReplyRun(deps, UUID(ai_id)).execute())["outcome"] == "done"
                again = await http.post(
                    f"/api/v1/messages/{ai_id}/regenerate", headers=user.headers
                )
                assert again.status_code == 202, again.text
                cancelled = await http.post(
                    f"/api/v1/messages/{again.json()['id']}/cancel", headers=user.headers
                )
                assert cancelled.status_code == 200, cancelled.text
                # The export job sends this after writing the archive; here only the event.
                await deps.events.publish_event(
                    user.id,
                    ExportReady(
                        data=ExportReadyData(
                            id=uuid4(), download_url="/api/v1/me/exports/x/download"
                        )
                    ),
                )
                # The import job sends this when a transcript import ends.
                now = datetime.now(UTC)
                await deps.events.publish_event(
                    user.id,
                    ImportFinished(
                        data=ImportOut(
                            id=uuid4(),
                            session_id=UUID(chat.json()["id"]),
                            format=ImportFormat.TEXT,
                            status=ImportStatus.FAILED,
                            size_bytes=12,
                            message_count=0,
                            errors=[ImportProblem(line=1, message='expected "Name: text"')],
                            created_at=now,
                            finished_at=now,
                        )
                    ),
                )
                await announce_account_change(
                    ai_redis, user.id, status="active", tier="premium", role="user"
                )
                everything = {str(cls.__struct_config__.tag) for cls in SERVER_EVENTS} | {
                    str(cls.__struct_config__.tag) for cls in SERVER_CONTROL_FRAMES
                }
                # The server's ping comes after a second of silence from the client.
                await read_until(ws, seen, everything - {"ping", "resync_required"})
                await read_until(ws, seen, {"ping"}, within=REALTIME.heartbeat_interval_seconds * 5)

    frames = seen + other
    for frame in frames:
        documented.check("event" if "event_id" in frame else "send", frame)
    for frame in sent:
        documented.check("receive", frame)
    assert {frame["type"] for frame in frames} == everything
    assert {frame["type"] for frame in sent} == {
        str(cls.__struct_config__.tag) for cls in CLIENT_FRAMES
    }
    deltas = [frame for frame in seen if frame["type"] == "message.delta"]
    assert len(deltas) >= 2
    failed = [frame for frame in seen if frame["type"] == "message.failed"]
    assert failed[0]["data"]["processing_status"] == "cancelled"

    # The check bites: a frame off its schema is refused.
    wrong = {**deltas[0], "data": {**deltas[0]["data"], "offset": "7"}}
    with pytest.raises(AssertionError):
        documented.check("event", wrong)
