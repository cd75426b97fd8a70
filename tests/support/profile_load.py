"""The load profile (wingman.loadtest) in resilient mode as a test's load, and its checks.

A few simulated users, signed in with tokens issued directly (tests/support/accounts.py), run
the profile's cycle through one base URL for the block: they post messages, watch the replies
on their sockets, ride out outages (tried again, reconnected, resumed) and count them. On leaving
the block they stop and the replies still in flight are awaited; the checks then ask the
database that every accepted message has exactly one reply, done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import create_caller
from wingman.config import Settings
from wingman.db.models import Message, ProcessingStatus, UserTier
from wingman.loadtest.resilience import Resilience, reply_counts
from wingman.loadtest.stats import Recorder
from wingman.loadtest.user import Shared, SimUser

# A short cycle: each user posts every few seconds, so a fault meets replies in flight.
CYCLE_SECONDS = 3.0


@dataclass
class ProfileLoad:
    shared: Shared
    resilience: Resilience
    users: list[SimUser]

    @property
    def posted(self) -> int:
        return len(self.shared.posted)

    def replies(self) -> dict[str, Any]:
        return reply_counts(self.shared.posted, self.shared.completions)

    def counts(self) -> dict[str, Any]:
        """The outage as the users saw it, and per message whether its reply arrived."""
        replies = self.replies()
        return {
            "users": len(self.users),
            **self.resilience.summary(),
            "errors": dict(self.shared.recorder.errors),
            "posted": replies["posted"],
            "replies_once": replies["arrived_once"],
            "replies_never": len(replies["never_arrived"]),
            "replies_twice": len(replies["arrived_twice"]),
        }

    async def until_posted(self, count: int, within_s: float = 30) -> None:
        deadline = time.monotonic() + within_s
        while True:
            if self.posted >= count:
                return
            assert time.monotonic() < deadline, f"the profile posted {self.posted} of {count}"
            await asyncio.sleep(0.05)


async def simulated_users(
    base_url: str,
    engine: AsyncEngine,
    settings: Settings,
    count: int,
    resilience: Resilience | None,
) -> tuple[Shared, list[SimUser]]:
    """``count`` simulated users of new premium accounts, resilient when ``resilience`` is
    given, not yet started."""
    shared = Shared(
        base_url=base_url,
        tls=None,
        codes=None,
        recorder=Recorder(),
        cycle_seconds=CYCLE_SECONDS,
        stop=resilience.stop if resilience is not None else asyncio.Event(),
        resilience=resilience,
    )
    users = []
    for index in range(count):
        caller = await create_caller(engine, settings, tier=UserTier.PREMIUM)
        token = caller.headers["Authorization"].removeprefix("Bearer ")
        users.append(SimUser(index, shared, "tests", token=token))
    return shared, users


@contextlib.asynccontextmanager
async def profile_load(
    base_url: str, engine: AsyncEngine, settings: Settings, users: int, settle_s: float = 60
) -> AsyncIterator[ProfileLoad]:
    """``users`` resilient simulated users against ``base_url`` for the block, every one
    connected before it starts; afterwards the replies in flight get ``settle_s`` to arrive."""
    resilience = Resilience(asyncio.Event())
    shared, sims = await simulated_users(base_url, engine, settings, users, resilience)
    load = ProfileLoad(shared, resilience, sims)
    running = [asyncio.create_task(sim.run()) for sim in sims]
    try:
        deadline = time.monotonic() + 30
        while True:
            if all(sim.connected for sim in sims):
                break
            assert not any(sim.failed for sim in sims), shared.recorder.errors
            assert time.monotonic() < deadline, "the profile's users did not all connect"
            await asyncio.sleep(0.05)
        yield load
    finally:
        resilience.stop.set()
        await asyncio.gather(*running, return_exceptions=True)
    deadline = time.monotonic() + settle_s
    while True:
        if all(shared.completions.get(ai_id) for ai_id in shared.posted):
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)


async def assert_each_reply_once_in_database(engine: AsyncEngine, load: ProfileLoad) -> None:
    """Every message the profile had accepted has exactly one AI reply in the database, done
    and not empty, and that reply arrived on its user's socket exactly once."""
    ai_ids = [UUID(ai_id) for ai_id in load.shared.posted]
    assert ai_ids, "the profile posted nothing"
    async with engine.connect() as conn:
        asked = (
            await conn.execute(
                select(Message.reply_to_id, Message.processing_status).where(Message.id.in_(ai_ids))
            )
        ).all()
        posts = [row[0] for row in asked]
        counted = await conn.execute(
            select(Message.reply_to_id, func.count())
            .where(Message.reply_to_id.in_(posts))
            .group_by(Message.reply_to_id)
        )
        answers = dict(counted.all())
    assert len(asked) == len(ai_ids)
    assert all(status == ProcessingStatus.DONE for _, status in asked), asked
    assert all(answers.get(post) == 1 for post in posts), answers
    replies = load.replies()
    assert replies["never_arrived"] == [], replies
    assert replies["arrived_twice"] == [], replies


def assert_no_server_error(load: ProfileLoad) -> None:
    """No answer 5xx other than 503, and every 503 carried Retry-After."""
    counts = load.counts()
    assert counts["server_errors"] == {}, counts
    assert counts["unavailable_without_retry_after"] == 0, counts
    assert not [k for k in counts["errors"] if ":http_5" in k], counts
