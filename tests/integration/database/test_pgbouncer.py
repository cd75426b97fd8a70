"""The application through PgBouncer in transaction pooling mode (docs/scale-out.md).

A private PgBouncer (Debian's binary, ``pool_mode = transaction``) stands in front of the test
session's PostgreSQL, and the real processes reach the database only through it: the web server,
and workers for all three queues. A user signs in with a one-time code, edits their account,
describes a profile, chats and gets the reply of an OpenAI-compatible server through the ``ai``
worker; an admin changes global config; the user exports their data and deletes the account,
which the ``heavy`` worker purges. PgBouncer's own counters show the traffic went through it.

Transaction pooling hands each transaction whatever server connection is free, so what this
guards is the engine keeping no session state: no server-side prepared statements (psycopg
prepares a query after its fifth run), the statement timeout set per transaction (PgBouncer
refuses the ``options`` startup parameter), and migrations on ``database.direct_url``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import create_caller
from tests.support.openai_server import OpenAIServer, Script
from tests.support.services import PrivateServices, child_env
from tests.support.web import running_server
from wingman.config import (
    AiSettings,
    ExportSettings,
    ImportSettings,
    OfflineProviderSettings,
    OpenAISettings,
    QueueSettings,
    RedisSettings,
    Settings,
)
from wingman.db.migrations import head_revision
from wingman.db.models import UserRole
from wingman.devstack.binaries import MissingBinaryError
from wingman.devstack.pgbouncer import PgBouncer
from wingman.server.database import create_engine

T = TypeVar("T")

POOLED_DATABASE = "wingman_pooled"
POOLED_REDIS_DB = 11


@pytest.fixture(scope="module")
def pgbouncer(services: PrivateServices) -> PgBouncer:
    try:
        return services.start_pgbouncer()
    except MissingBinaryError as exc:
        if os.geteuid() == 0 or os.environ.get("CI"):
            raise  # scripts/bootstrap installs it as root: missing there is a failure
        pytest.skip(str(exc))


def migrate(settings: Settings, folder: Path) -> subprocess.Popen[bytes]:
    """``wingmanctl migrate --json`` with exactly ``settings``, started, not awaited."""
    return subprocess.Popen(
        [sys.executable, "-m", "wingman.ctl", "migrate", "--json"],
        env=child_env(settings, folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="module")
def pooled_settings(
    services: PrivateServices, pgbouncer: PgBouncer, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings whose database URL is the PgBouncer, on a database and Redis db of their own
    (workers take every job of their queue), migrated by ``wingmanctl migrate``."""
    services.postgres.ensure_database(POOLED_DATABASE)
    base = services.settings(POOLED_DATABASE, pooled=True)
    folder = tmp_path_factory.mktemp("pooled")
    queues = dict(base.worker.queues)
    queues["heavy"] = QueueSettings(concurrency=1, timeout=120, retries=2, heartbeat=5)
    settings = msgspec.structs.replace(
        base,
        worker=msgspec.structs.replace(base.worker, queues=queues, shutdown_grace=5),
        redis=RedisSettings(
            queue_url=services.redis_queue.url(POOLED_REDIS_DB),
            cache_url=services.redis_cache.url(),
        ),
        exports=ExportSettings(dir=str(folder / "exports")),
        imports=ImportSettings(dir=str(folder / "imports")),
        ai=AiSettings(offline=OfflineProviderSettings(token_interval_ms=0), retry_delay=0.05),
    )
    done = migrate(settings, folder / "migrate")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err.decode()
    assert json.loads(out)["up_to_date"] is True
    return settings


@pytest.fixture(scope="module")
async def pooled_engine(pooled_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pooled_settings.database, "wingman-pooled-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


@contextmanager
def worker(settings: Settings, folder: Path, queue: str) -> Iterator[Path]:
    """A real ``wingmanctl worker --queue <queue>``; yields its log file."""
    home = folder / queue
    env = child_env(settings, home)
    log = home / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "wingman", "worker", "--queue", queue],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def poll(check: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {seconds} s")


def logged_code(log: Path, request_id: str) -> str | None:
    """The code the ``log`` delivery backend wrote for ``request_id``, once written."""
    for raw in log.read_text().splitlines():
        if raw.startswith("{"):
            entry = json.loads(raw)
            if entry.get("event") == "otp_code" and entry.get("request_id") == request_id:
                return str(entry["code"])
    return None


def one_time_code(api: httpx.Client, log: Path, email: str) -> dict[str, str]:
    requested = api.post(
        "/api/v1/auth/otp/request", json={"channel": "email", "destination": email}
    )
    assert requested.status_code == 202, requested.text
    request_id = requested.json()["request_id"]
    code = poll(lambda: logged_code(log, request_id), 30, f"code for {request_id}")
    return {"request_id": request_id, "code": code}


def test_migrate_uses_the_direct_url_and_runs_once_when_nodes_race(
    services: PrivateServices, pgbouncer: PgBouncer, tmp_path: Path
) -> None:
    """Two nodes start ``wingmanctl migrate`` at once on an empty database: the advisory lock
    queues the second behind the first, which finds nothing left to do. Their ``url`` names a
    database that does not exist, so success means both went through ``direct_url``."""
    name = f"t_race_{os.urandom(4).hex()}"
    services.postgres.ensure_database(name)
    try:
        base = services.settings(name, pooled=True)
        settings = msgspec.structs.replace(
            base,
            database=msgspec.structs.replace(base.database, url=pgbouncer.url("no_such_database")),
        )
        runs = [migrate(settings, tmp_path / f"node{i}") for i in range(2)]
        results = [run.communicate(timeout=120) for run in runs]
        for run, (_, err) in zip(runs, results, strict=True):
            assert run.returncode == 0, err.decode()
        applied = sorted(len(json.loads(out)["applied"]) for out, _ in results)
        # One run applied every revision; the other, queued on the lock, found none pending.
        assert applied[0] == 0
        assert applied[1] > 0
        with psycopg.connect(services.postgres.conninfo(name)) as conn:
            versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert versions == [(head_revision(),)]
    finally:
        services.postgres.drop_database(name)


async def test_no_prepared_statement_or_session_setting_leaks_between_transactions(
    pooled_settings: Settings, pgbouncer: PgBouncer
) -> None:
    """PgBouncer hands the transactions of many pool connections a few server connections in
    turn. Repeating one query past psycopg's prepare threshold would leave prepared statements
    on those server connections for other clients to collide with (``prepared statement
    "_pg3_0" already exists``) or to miss; and every transaction sees the configured statement
    timeout, enforced."""
    db = msgspec.structs.replace(
        pooled_settings.database, statement_timeout_ms=300, pool_size=8, max_overflow=0
    )
    engine = create_engine(db, "wingman-pooled-checks")
    before = pgbouncer.stats(POOLED_DATABASE).get("total_xact_count", 0)
    try:

        async def repeat(n: int) -> set[tuple[str, int]]:
            seen = set()
            for i in range(12):
                # Committed, as requests are: psycopg forgets its counts on every rollback.
                async with engine.begin() as conn:
                    row = (
                        await conn.execute(
                            text(
                                "SELECT current_setting('statement_timeout'),"
                                " (SELECT count(*) FROM pg_prepared_statements), :n + :i"
                            ),
                            {"n": n, "i": i},
                        )
                    ).one()
                seen.add((row[0], row[1]))
            return seen

        seen = set().union(*await asyncio.gather(*(repeat(n) for n in range(8))))
        # Every transaction: the configured timeout, and no statement prepared on its server
        # connection (which the next transaction of another client would find, or miss).
        assert seen == {("300ms", 0)}
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as raised:
                await conn.execute(text("SELECT pg_sleep(2)"))
        assert isinstance(raised.value.orig, psycopg.errors.QueryCanceled)
    finally:
        await engine.dispose()
    # The transactions went through PgBouncer (its counters refresh every second).
    poll(
        lambda: (
            True
            if pgbouncer.stats(POOLED_DATABASE).get("total_xact_count", 0) >= before + 96
            else None
        ),
        10,
        "transactions counted by PgBouncer",
    )


async def test_a_user_signs_in_chats_exports_and_is_purged_through_pgbouncer(
    pooled_settings: Settings, pooled_engine: AsyncEngine, pgbouncer: PgBouncer, tmp_path: Path
) -> None:
    model = OpenAIServer().start()
    model.scripts = [Script(pieces=["Say", " hello", " through", " the pooler."])] * 4
    settings = msgspec.structs.replace(
        pooled_settings,
        ai=msgspec.structs.replace(
            pooled_settings.ai, openai=OpenAISettings(base_url=model.base_url, api_key="sk-test")
        ),
    )
    admin = await create_caller(pooled_engine, settings, role=UserRole.ADMIN)
    before = pgbouncer.stats(POOLED_DATABASE).get("total_xact_count", 0)
    with ExitStack() as stack:
        stack.callback(model.stop)
        default_log = stack.enter_context(worker(settings, tmp_path, "default"))
        stack.enter_context(worker(settings, tmp_path, "ai"))
        stack.enter_context(worker(settings, tmp_path, "heavy"))
        (tmp_path / "web").mkdir()
        web = stack.enter_context(running_server(settings, tmp_path / "web"))
        api = stack.enter_context(httpx.Client(base_url=web.url, timeout=30))
        as_admin = admin.headers

        # Admin endpoints: replies from the OpenAI-compatible server; purge without a grace.
        for key, value in (
            ("ai", {"provider": "openai", "model": "test-model"}),
            ("privacy", {"deletion_grace_days": 0}),
        ):
            changed = api.put(f"/api/v1/admin/config/{key}", json=value, headers=as_admin)
            assert changed.status_code == 200, changed.text

        # Sign-in with a one-time code from the default worker.
        email = f"pooled-{time.time_ns()}@example.org"
        verified = api.post("/api/v1/auth/otp/verify", json=one_time_code(api, default_log, email))
        assert verified.status_code == 200, verified.text
        tokens = verified.json()
        me = {"Authorization": f"Bearer {tokens['access_token']}"}
        user_id = tokens["user"]["id"]
        patched = api.patch("/api/v1/me", json={"display_name": "Pooled"}, headers=me)
        assert patched.status_code == 200, patched.text
        refreshed = api.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text

        profile = api.post(
            "/api/v1/profiles", json={"name": "Sam", "interests": ["chess"]}, headers=me
        )
        assert profile.status_code == 201, profile.text
        session = api.post(
            "/api/v1/sessions", json={"profile_id": profile.json()["id"]}, headers=me
        )
        assert session.status_code == 201, session.text
        session_id = session.json()["id"]
        posted = api.post(
            f"/api/v1/sessions/{session_id}/messages", json={"content": "hi there"}, headers=me
        )
        assert posted.status_code == 202, posted.text

        def reply() -> dict[str, Any] | None:
            page = api.get(f"/api/v1/sessions/{session_id}/messages", headers=me).json()
            done = [m for m in page["items"] if m["sender"] == "ai"]
            return done[0] if done and done[0]["processing_status"] == "done" else None

        answer = poll(reply, 30, "AI reply")
        assert answer["content"] == "Say hello through the pooler."
        # Feedback is one statement on the autocommit engine, which behind a pooler is the
        # transactional one: it must be committed all the same (the export below has it).
        feedback = {"type": "copied", "message_id": answer["id"], "payload": {}}
        copied = api.post(f"/api/v1/sessions/{session_id}/events", json=feedback, headers=me)
        assert copied.status_code == 201, copied.text
        listed = api.get("/api/v1/sessions", headers=me).json()
        assert [s["id"] for s in listed["items"]] == [session_id]
        assert listed["items"][0]["message_count"] == 2

        found = api.get("/api/v1/admin/users", params={"query": email}, headers=as_admin)
        assert found.status_code == 200, found.text
        assert [u["id"] for u in found.json()["items"]] == [user_id]

        # Export through the heavy worker: its cursor streams inside one transaction.
        export = api.post("/api/v1/me/export", headers=me)
        assert export.status_code == 202, export.text
        export_id = export.json()["id"]

        def ready() -> dict[str, Any] | None:
            body: dict[str, Any] = api.get(f"/api/v1/me/exports/{export_id}", headers=me).json()
            return body if body["status"] == "ready" else None

        done = poll(ready, 60, "ready export")
        archive = api.get(done["download_url"], headers=me)
        assert archive.status_code == 200
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            messages = [json.loads(line) for line in zipped.read("messages.jsonl").splitlines()]
            events = [json.loads(line) for line in zipped.read("events.jsonl").splitlines()]
        assert sorted(m["content"] for m in messages) == [
            "Say hello through the pooler.",
            "hi there",
        ]
        assert [(e["type"], e["message_id"]) for e in events] == [("copied", answer["id"])]

        # Deletion, confirmed with a fresh code; grace 0: the heavy worker purges at once.
        deleted = api.request(
            "DELETE", "/api/v1/me", json=one_time_code(api, default_log, email), headers=me
        )
        assert deleted.status_code == 202, deleted.text
        assert api.get("/api/v1/me", headers=me).status_code == 401

        def purged() -> bool | None:
            account = api.get(f"/api/v1/admin/users/{user_id}", headers=as_admin)
            return True if account.status_code == 404 else None

        poll(purged, 60, "purged account")

    assert len(model.requests) == 1
    forwarded = poll(
        lambda: (
            stats
            if (stats := pgbouncer.stats(POOLED_DATABASE)).get("total_xact_count", 0) > before + 50
            else None
        ),
        10,
        "transactions counted by PgBouncer",
    )
    assert forwarded["total_xact_count"] > before
