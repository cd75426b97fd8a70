"""Client loops over four route classes (a repository read, a keyset list, a message page, the
message post) and what they saw: for tests that break the database under traffic."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from uuid import UUID

import httpx
import msgspec
from sqlalchemy import select

from wingman.config import Settings
from wingman.db.models import Message
from wingman.domain.chat.replies import reply_job_key
from wingman.queues import create_queue
from wingman.server.database import create_engine

# Problem types a request may get while the database is away (both are 503 with Retry-After).
UNAVAILABLE = {"urn:wingman:problem:unavailable", "urn:wingman:problem:server-busy"}


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


async def run_loop(client: httpx.AsyncClient, kind: str, session_id: str, traffic: Traffic) -> None:
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


KINDS = ("me", "sessions", "messages", "post")


def assert_refusals_were_unavailable(traffic: Traffic) -> list[Answer]:
    """Every 5xx the loops saw was a 503 problem with Retry-After, and no lost connection was
    answered 409; the 5xx answers."""
    failures = [a for a in traffic.answers if a.status >= 500]
    for answer in failures:
        assert answer.status == 503, (answer.kind, answer.status, answer.body[:300])
        assert answer.headers["content-type"] == "application/problem+json"
        assert int(answer.headers["retry-after"]) > 0
        assert msgspec.json.decode(answer.body)["type"] in UNAVAILABLE
    assert not [a for a in traffic.answers if a.status == 409], "a lost connection answered 409"
    return failures


async def assert_accepted_posts_kept(traffic: Traffic, settings: Settings) -> None:
    """Nothing accepted was lost: each 202's messages are stored and its reply job is queued."""
    assert traffic.accepted
    engine = create_engine(settings.database, "wingman-tests")
    queue = create_queue(settings, "ai")
    try:
        async with engine.connect() as connection:
            stored = set((await connection.scalars(select(Message.id))).all())
        for user_message, ai_message in traffic.accepted:
            assert {user_message, ai_message} <= stored
            assert await queue.job(reply_job_key(ai_message)) is not None, ai_message
    finally:
        await queue.disconnect()
        await engine.dispose()
