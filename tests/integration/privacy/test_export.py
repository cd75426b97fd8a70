"""``POST /me/export`` end to end with a real heavy worker: the archive, its manifest and
checksums, only the caller's rows, ``export.ready``, one export at a time, and 404 for anyone
else's export."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.privacy.conftest import (
    count_rows,
    files_of,
    heavy_worker,
    poll,
    seed_chat,
)
from tests.support.accounts import Caller
from tests.support.events import events_of
from wingman.config import Settings
from wingman.domain.privacy.archive import verify


async def status_of(
    client: AsyncTestClient[Litestar], caller: Caller, export_id: str
) -> dict[str, Any]:
    response = await client.get(f"/api/v1/me/exports/{export_id}", headers=caller.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def resumes_in_pieces(
    client: AsyncTestClient[Litestar], caller: Caller, url: str, whole: bytes
) -> None:
    """A cut download resumes with a Range from where it stopped; the pieces are the file."""
    size = len(whole)
    first = await client.get(url, headers={**caller.headers, "Range": "bytes=0-999"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-999/{size}"
    etag = first.headers["etag"]
    rest = await client.get(
        url, headers={**caller.headers, "Range": "bytes=1000-", "If-Range": etag}
    )
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes 1000-{size - 1}/{size}"
    assert int(rest.headers["content-length"]) == size - 1000
    assert first.content + rest.content == whole
    tail = await client.get(url, headers={**caller.headers, "Range": "bytes=-22"})
    assert tail.content == whole[-22:]  # the zip's end-of-directory record
    # The file changed since the first piece (another ETag): the whole file, 200.
    changed = await client.get(
        url, headers={**caller.headers, "Range": "bytes=1000-", "If-Range": '"other"'}
    )
    assert changed.status_code == 200
    assert changed.content == whole
    assert changed.headers["accept-ranges"] == "bytes"
    past = await client.get(url, headers={**caller.headers, "Range": f"bytes={size}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{size}"
    assert past.json()["type"] == "urn:wingman:problem:range-not-satisfiable"


async def test_an_export_holds_exactly_the_callers_rows_with_a_checked_manifest(  # noqa: PLR0917
    privacy_client: AsyncTestClient[Litestar],
    privacy_settings: Settings,
    privacy_engine: AsyncEngine,
    privacy_redis: Redis,
    alice: Caller,
    bob: Caller,
    tmp_path: Path,
) -> None:
    await seed_chat(privacy_engine, alice.id, sessions=3, messages=400, marker="alice-secret")
    await seed_chat(privacy_engine, bob.id, sessions=2, messages=50, marker="bob-secret")
    client = privacy_client
    first = await client.post("/api/v1/me/export", headers=alice.headers)
    assert first.status_code == 202, first.text
    export = first.json()
    assert export["status"] == "pending"
    assert export["download_url"] is None
    # One at a time: a second request names the export in progress.
    again = await client.post("/api/v1/me/export", headers=alice.headers)
    assert again.status_code == 409
    assert again.json()["type"] == "urn:wingman:problem:export-in-progress"
    assert again.json()["export_id"] == export["id"]
    # Not ready yet: no download.
    early = await client.get(f"/api/v1/me/exports/{export['id']}/download", headers=alice.headers)
    assert early.status_code == 404

    with heavy_worker(privacy_settings, tmp_path):

        async def ready() -> dict[str, Any] | None:
            body = await status_of(client, alice, export["id"])
            return body if body["status"] == "ready" else None

        done = await poll(ready, 60, "the export to be ready")
    assert done["download_url"] == f"/api/v1/me/exports/{export['id']}/download"

    # Bob finds nothing of Alice's export.
    for url in (f"/api/v1/me/exports/{export['id']}", done["download_url"]):
        foreign = await client.get(url, headers={**bob.headers, "Range": "bytes=0-"})
        assert foreign.status_code == 404, url
        assert "alice" not in foreign.text

    response = await client.get(done["download_url"], headers=alice.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert int(response.headers["content-length"]) == done["size_bytes"]
    archive_path = tmp_path / "export.zip"
    archive_path.write_bytes(response.content)
    manifest = verify(archive_path)  # every member's rows, size and SHA-256
    rows = {table.name: table.rows for table in manifest.tables}
    expected = await count_rows(privacy_engine, alice.id)
    assert {name: rows[name] for name in expected} == expected
    assert expected["messages"] == 1200
    assert manifest.user_id == alice.id

    await resumes_in_pieces(client, alice, done["download_url"], response.content)

    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        everything = b"".join(archive.read(name) for name in archive.namelist())
        messages = [json.loads(line) for line in archive.read("messages.jsonl").splitlines()]
        sign_ins = archive.read("sign_ins.jsonl")
    assert b"alice-secret" in everything
    assert b"bob-secret" not in everything
    assert str(bob.id).encode() not in everything
    assert all(m["content"].startswith("alice-secret line") for m in messages)
    assert "run_id" not in messages[0]
    assert "token_hash" not in sign_ins.decode()
    # Nothing but the finished archive is left in the private folder.
    folder = Path(privacy_settings.exports.dir)
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)  # noqa: ASYNC240
    assert files_of(folder, export["id"]) == [f"{export['id']}.zip"]
    ready_events = await events_of(privacy_redis, alice.id, "export.ready")
    assert [e.data["id"] for e in ready_events] == [export["id"]]
    assert await events_of(privacy_redis, bob.id, "export.ready") == []


async def test_exports_are_rate_limited_and_need_a_token(
    privacy_client: AsyncTestClient[Litestar], alice: Caller, privacy_engine: AsyncEngine
) -> None:
    from sqlalchemy import update

    from wingman.db.models import DataExport, DataExportStatus

    statuses = []
    for _ in range(4):
        response = await privacy_client.post("/api/v1/me/export", headers=alice.headers)
        statuses.append(response.status_code)
        # Finish it by hand, so only the allowance (3 a day) can refuse the next one.
        async with privacy_engine.begin() as connection:
            await connection.execute(
                update(DataExport)
                .where(DataExport.user_id == alice.id)
                .values(status=DataExportStatus.FAILED)
            )
    assert statuses == [202, 202, 202, 429]
    assert (await privacy_client.post("/api/v1/me/export")).status_code == 401
