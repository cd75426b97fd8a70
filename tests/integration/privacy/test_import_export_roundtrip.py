"""Import → export round trip: what a transcript import stored is what the account export gives.

A generated transcript (either format, any Unicode text, several speakers) is uploaded through
``POST /sessions/{id}/imports`` and parsed by a real heavy worker; the account is then exported
through ``POST /me/export`` by the same worker, and the archive must hold exactly the imported
messages (text, order, sender) with the times the import gave them, and list the import itself.

Times: transcripts' own dates are not imported (docs/privacy.md, "Imports"); the messages of
an import end at the time the import finished, one microsecond apart, and the archive keeps
them to the microsecond, as PostgreSQL stores them.
"""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.privacy.conftest import heavy_worker, poll
from tests.support.accounts import Caller, create_caller
from wingman.config import Settings
from wingman.domain.privacy.archive import verify

Client = AsyncTestClient[Litestar]

# Printable text of any script; no control characters (a line break ends a text line), no
# surrogates, no NUL (PostgreSQL text cannot hold one). Imports trim surrounding white space.
_letters = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\x00")
contents = st.text(alphabet=_letters, min_size=1, max_size=60).filter(
    lambda text: text == text.strip()
)
# A text line's speaker ends at its first ": ".
authors = st.text(alphabet=_letters, min_size=1, max_size=20).filter(
    lambda name: name == name.strip() and ": " not in name
)
mes = st.sampled_from(["Me", "Zoë 🙂"])


@dataclass(frozen=True)
class Line:
    author: str
    content: str
    # The transcript's own time of the message (Telegram's ``date``); not imported.
    said_at: datetime


@st.composite
def transcripts(draw: st.DrawFn) -> tuple[str, str, list[Line]]:
    """(me, format, lines): a transcript with the caller and one or more others speaking."""
    me = draw(mes)
    others = draw(st.lists(authors.filter(lambda name: name != me), min_size=1, max_size=3))
    start = draw(
        st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2026, 1, 1))
    ).replace(microsecond=0)
    gaps = draw(st.lists(st.integers(0, 86_400), min_size=1, max_size=20))
    lines, at = [], start
    for gap in gaps:
        at += timedelta(seconds=gap)
        author = draw(st.sampled_from([me, *others]))
        lines.append(Line(author, draw(contents), at))
    return me, draw(st.sampled_from(["text", "telegram"])), lines


def as_text(lines: list[Line]) -> bytes:
    # Windows line ends and a byte-order mark, as editors on that system write them.
    return ("\ufeff" + "".join(f"{line.author}: {line.content}\r\n" for line in lines)).encode()


def as_telegram(lines: list[Line]) -> bytes:
    """Telegram Desktop's machine-readable export, with its dates and a service message."""
    messages: list[dict[str, Any]] = [
        {"id": 1, "type": "service", "date": "2014-12-31T23:59:59", "action": "create_group"}
    ]
    for number, line in enumerate(lines, start=2):
        half = len(line.content) // 2
        # Every other text as entities, as Telegram writes formatted text.
        text: Any = (
            line.content
            if number % 2
            else [line.content[:half], {"type": "italic", "text": line.content[half:]}]
        )
        messages.append(
            {
                "id": number,
                "type": "message",
                "date": line.said_at.isoformat(),
                "date_unixtime": str(int(line.said_at.replace(tzinfo=UTC).timestamp())),
                "from": line.author,
                "from_id": f"user{abs(hash(line.author)) % 10**9}",
                "text": text,
            }
        )
    document = {"name": "Chat", "type": "personal_chat", "id": 7, "messages": messages}
    return json.dumps(document, ensure_ascii=False, indent=1).encode()


def instant(value: str) -> datetime:
    """A timestamptz as PostgreSQL's JSON or the API writes it."""
    return datetime.fromisoformat(value)


@pytest.fixture(scope="module")
def worker(
    privacy_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """One real heavy worker for every example: it parses the imports and writes the exports."""
    with heavy_worker(privacy_settings, tmp_path_factory.mktemp("roundtrip")) as proc:
        yield proc


async def import_transcript(
    client: Client, caller: Caller, me: str, kind: str, body: bytes
) -> tuple[str, dict[str, Any]]:
    """The new session's id and the finished import."""
    created = await client.post("/api/v1/sessions", json={}, headers=caller.headers)
    assert created.status_code == 201, created.text
    session_id = str(created.json()["id"])
    uploaded = await client.post(
        f"/api/v1/sessions/{session_id}/imports",
        params={"format": kind, "me": me},
        content=body,
        headers={**caller.headers, "Content-Type": "application/octet-stream"},
    )
    assert uploaded.status_code == 202, uploaded.text
    url = f"/api/v1/sessions/{session_id}/imports/{uploaded.json()['id']}"

    async def finished() -> dict[str, Any] | None:
        response = await client.get(url, headers=caller.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] != "queued" else None

    return session_id, await poll(finished, 30, "the import to finish", every=0.05)


async def export_archive(client: Client, caller: Caller, folder: Path) -> Path:
    """The account's export, downloaded and checked against its manifest."""
    started = await client.post("/api/v1/me/export", headers=caller.headers)
    assert started.status_code == 202, started.text
    export_id = started.json()["id"]

    async def ready() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/me/exports/{export_id}", headers=caller.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] != "failed", body
        return body if body["status"] == "ready" else None

    done = await poll(ready, 60, "the export to be ready", every=0.05)
    download = await client.get(done["download_url"], headers=caller.headers)
    assert download.status_code == 200
    path = folder / f"{export_id}.zip"
    path.write_bytes(download.content)
    verify(path)  # every member's rows, size and SHA-256 as its manifest says
    return path


def members(path: Path, *names: str) -> list[list[dict[str, Any]]]:
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        return [[json.loads(row) for row in archive.read(name).splitlines()] for name in names]


@hypothesis_settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(transcript=transcripts())
async def test_an_imported_transcript_comes_back_exactly_in_the_export(  # noqa: PLR0917
    privacy_client: Client,
    privacy_engine: AsyncEngine,
    privacy_settings: Settings,
    worker: subprocess.Popen[bytes],
    tmp_path: Path,
    transcript: tuple[str, str, list[Line]],
) -> None:
    me, kind, lines = transcript
    # An account of its own per example: exports are one at a time and a few a day.
    caller = await create_caller(privacy_engine, privacy_settings)
    body = as_text(lines) if kind == "text" else as_telegram(lines)
    session_id, done = await import_transcript(privacy_client, caller, me, kind, body)
    assert done["status"] == "done", done["errors"]
    assert done["message_count"] == len(lines)

    archive = await export_archive(privacy_client, caller, tmp_path)
    messages, imports, sessions = members(
        archive, "messages.jsonl", "imports.jsonl", "sessions.jsonl"
    )

    # Text, order and sender, exactly.
    expected = [("user" if line.author == me else "contact", line.content) for line in lines]
    assert [(m["sender"], m["content"]) for m in messages] == expected
    assert {m["session_id"] for m in messages} == {session_id}
    assert {m["import_id"] for m in messages} == {done["id"]}
    assert {m["processing_status"] for m in messages} == {"done"}

    # The import is listed, with what the API reported of it.
    assert len(imports) == 1
    listed = imports[0]
    assert (listed["id"], listed["session_id"], listed["format"]) == (done["id"], session_id, kind)
    assert (listed["status"], listed["message_count"]) == ("done", len(lines))
    assert listed["size_bytes"] == len(body) == done["size_bytes"]
    assert listed["me"] == me
    assert instant(listed["finished_at"]) == instant(done["finished_at"])
    assert [(s["id"], s["message_count"]) for s in sessions] == [(session_id, len(lines))]

    # Times: ending when the import finished, one microsecond apart, kept to the microsecond.
    finished = instant(listed["finished_at"])
    times = [instant(m["created_at"]) for m in messages]
    assert times == [finished - timedelta(microseconds=len(lines) - i) for i in range(len(lines))]
    assert [instant(m["completed_at"]) for m in messages] == times
    # The same instants a client reads through the API.
    page = await privacy_client.get(
        f"/api/v1/sessions/{session_id}/messages",
        params={"limit": 100},
        headers=caller.headers,
    )
    assert page.status_code == 200, page.text
    shown = list(reversed(page.json()["items"]))
    assert [(m["id"], instant(m["created_at"])) for m in shown] == [
        (m["id"], t) for m, t in zip(messages, times, strict=True)
    ]
