"""PostgreSQL restarted under traffic, against a real ``wingman serve`` process.

The server gets a PostgreSQL cluster of its own (the session's shared one is left alone), which is
stopped with a fast shutdown while clients keep calling a repository read (``GET /me``), a keyset
list, a message page and the message post. While it is down every answer is a 503 problem with
Retry-After, never another 5xx; once it is back the pool's pre-ping replaces the dead connections
and every route answers again within seconds; and every post answered 202 is committed with its
AI message and has its reply job queued.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from uuid import UUID

import httpx
import msgspec
import pytest
from sqlalchemy import select

from tests.support.accounts import Caller, create_caller
from tests.support.services import new_postgres, service_folder
from tests.support.web import WebServer, running_server
from wingman.config import DatabaseSettings, Settings
from wingman.db.migrations import upgrade_to_head
from wingman.db.models import Message, UserTier
from wingman.devstack.postgres import PostgresCluster
from wingman.domain.ai.jobs import reply_job_key
from wingman.queues import create_queue
from wingman.server.database import create_engine

pytestmark = pytest.mark.e2e

UNAVAILABLE = {"urn:wingman:problem:unavailable", "urn:wingman:problem:server-busy"}
# Seconds from the restarted server accepting connections to every route answering again.
RECOVERY_SECONDS = 10.0


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresCluster]:
    root = service_folder("wingman-restart-")
    postgres = new_postgres(root / "postgres", secrets.token_urlsafe(16))
    try:
        postgres.start()
        postgres.ensure_database("wingman")
        upgrade_to_head(postgres.url("wingman"))
        yield postgres
    finally:
        postgres.stop(mode="fast")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def restart_settings(settings: Settings, own_postgres: PostgresCluster) -> Settings:
    return msgspec.structs.replace(
        settings, database=DatabaseSettings(url=own_postgres.url("wingman"))
    )


@pytest.fixture(scope="module")
def server(
    restart_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    with running_server(restart_settings, tmp_path_factory.mktemp("restart")) as web:
        yield web


@pytest.fixture(scope="module")
async def caller(restart_settings: Settings) -> AsyncIterator[Caller]:
    # Premium: its chat and AI allowances hold the posts this test sends.
    engine = create_engine(restart_settings.database, "wingman-tests")
    try:
        yield await create_caller(engine, restart_settings, tier=UserTier.PREMIUM)
    finally:
        await engine.dispose()


@dataclass
class Answer:
    at: float
    kind: str
    status: int
    headers: httpx.Headers
    body: bytes


@dataclass
class Traffic:
    """What the client loops saw, and the AI messages of every accepted post."""

    answers: list[Answer] = field(default_factory=list)
    accepted: list[tuple[UUID, UUID]] = field(default_factory=list)
    running: bool = True

    def first_success(self, kind: str, since: float) -> float:
        """When ``kind`` first succeeded from ``since`` on (infinity: not yet)."""
        times = [a.at for a in self.answers if a.kind == kind and a.at >= since and a.status < 300]
        return min(times, default=float("inf"))

    def succeeded(self, kind: str, since: float) -> bool:
        return self.first_success(kind, since) < float("inf")

    def refused(self, kind: str, since: float) -> bool:
        return any(a.kind == kind and a.at >= since and a.status >= 500 for a in self.answers)


async def _loop(client: httpx.AsyncClient, kind: str, session_id: str, traffic: Traffic) -> None:
    n = 0
    while traffic.running:
        n += 1
        at = time.monotonic()
        if kind == "me":
            response = await client.get("/api/v1/me")
        elif kind == "sessions":
            response = await client.get("/api/v1/sessions", params={"limit": 20})
        elif kind == "messages":
            response = await client.get(f"/api/v1/sessions/{session_id}/messages")
        else:
            response = await client.post(
                f"/api/v1/sessions/{session_id}/messages",
                json={"content": f"still there? {n}", "idempotency_key": f"restart-{n}"},
            )
            if response.status_code == 202:
                pair = response.json()
                ids = (UUID(pair["user_message"]["id"]), UUID(pair["ai_message"]["id"]))
                traffic.accepted.append(ids)
        traffic.answers.append(
            Answer(at, kind, response.status_code, response.headers, response.content)
        )
        # Posts are paced to stay inside the caller's chat and AI allowances.
        await asyncio.sleep(0.4 if kind == "post" else 0.02)


async def _until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return False


KINDS = ("me", "sessions", "messages", "post")


async def test_requests_get_503_during_a_restart_and_succeed_after(
    server: WebServer, caller: Caller, own_postgres: PostgresCluster, restart_settings: Settings
) -> None:
    traffic = Traffic()
    async with httpx.AsyncClient(base_url=server.url, headers=caller.headers, timeout=30) as client:
        created = await client.post("/api/v1/sessions", json={"title": "restart"})
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        loops = [asyncio.create_task(_loop(client, k, session_id, traffic)) for k in KINDS]
        try:
            began = time.monotonic()
            assert await _until(lambda: all(traffic.succeeded(k, began) for k in KINDS), 20)

            stopping = time.monotonic()
            await asyncio.to_thread(own_postgres.stop, "fast")
            # Down until every route class has been refused at least once.
            down = await _until(lambda: all(traffic.refused(k, stopping) for k in KINDS), 20)
            await asyncio.to_thread(own_postgres.start)
            back = time.monotonic()
            assert down, "not every route was refused while PostgreSQL was down"

            recovered = await _until(
                lambda: all(traffic.succeeded(k, back) for k in KINDS), RECOVERY_SECONDS
            )
            recovery = max(traffic.first_success(k, back) - back for k in KINDS)
            print(
                f"every route answered again {recovery:.2f} s after PostgreSQL accepted connections"
            )
            assert recovered, f"not every route recovered within {RECOVERY_SECONDS} s"
        finally:
            traffic.running = False
            await asyncio.gather(*loops)

    failures = [a for a in traffic.answers if a.status >= 500]
    assert failures, "the outage was not seen by any request"
    for answer in failures:
        assert answer.status == 503, (answer.kind, answer.status, answer.body[:300])
        assert answer.headers["content-type"] == "application/problem+json"
        assert int(answer.headers["retry-after"]) > 0
        assert msgspec.json.decode(answer.body)["type"] in UNAVAILABLE
    assert not [a for a in traffic.answers if a.status == 409], "a lost connection answered 409"

    # Nothing accepted was lost: each 202's messages are stored and its reply job is queued.
    assert traffic.accepted
    engine = create_engine(restart_settings.database, "wingman-tests")
    queue = create_queue(restart_settings, "ai")
    try:
        async with engine.connect() as connection:
            stored = set((await connection.scalars(select(Message.id))).all())
        for user_message, ai_message in traffic.accepted:
            assert {user_message, ai_message} <= stored
            assert await queue.job(reply_job_key(ai_message)) is not None, ai_message
    finally:
        await queue.disconnect()
        await engine.dispose()
