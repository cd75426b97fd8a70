"""The load profile's resilient mode against a real server that goes away and comes back.

``wingman serve`` and an ``ai`` worker run on the test's private PostgreSQL and Redis; a few
simulated users in resilient mode chat with it while the server is stopped and started again on
the same port. They ride it out: requests refused meanwhile are tried again, every socket is
reconnected and resumed, and every accepted message's reply arrives exactly once. The default
mode, against the same outage, counts errors and does not retry.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.test_realtime import WebServer
from tests.support.polling import until
from tests.support.profile_load import simulated_users
from wingman.config import Settings
from wingman.loadtest.resilience import Resilience, backoff, reply_counts, retry_after
from wingman.server.database import create_engine

pytestmark = pytest.mark.e2e
USERS = 4


class Served:
    """The web server and an ``ai`` worker (replies arrive while the server is away)."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.web = WebServer(settings, folder, workers=1)
        self.web.env["WINGMAN_AI__OFFLINE__TOKEN_INTERVAL_MS"] = "10"
        self.folder = folder
        self.worker: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web.port}"

    def start(self) -> None:
        with (self.folder / "worker.log").open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "wingman", "worker", "--queue", "ai"],
                env=self.web.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.web.start()

    def stop(self) -> None:
        self.web.shut_down()
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(30)


@pytest.fixture(scope="module")
def served(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = Served(settings, tmp_path_factory.mktemp("loadtest-resilient"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database, "wingman-tests")
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_resilient_users_ride_out_a_server_restart(
    served: Served, engine: AsyncEngine, settings: Settings
) -> None:
    resilience = Resilience(asyncio.Event())
    shared, users = await simulated_users(served.base_url, engine, settings, USERS, resilience)
    running = [asyncio.create_task(user.run()) for user in users]
    assert await until(lambda: all(u.connected for u in users) and len(shared.posted) >= USERS, 30)
    await asyncio.to_thread(served.web.stop)
    # Down until the users have met it: requests that find nothing listening.
    assert await until(lambda: resilience.connection_errors > 0, 30)
    await asyncio.to_thread(served.web.start)
    restarted_with = len(shared.posted)
    assert await until(lambda: len(shared.posted) >= restarted_with + USERS, 60)
    resilience.stop.set()
    await asyncio.gather(*running)
    # Replies in flight at the stop arrive before the users settle.
    assert await until(lambda: all(shared.completions.get(i) for i in shared.posted), 30)

    replies = reply_counts(shared.posted, shared.completions)
    counts = resilience.summary()
    print(f"\nresilient: {counts} replies: {replies['posted']} posted")
    assert not any(user.failed for user in users)
    assert counts["reconnects"] >= USERS, counts
    assert counts["resumes"] == counts["reconnects"], counts
    assert counts["connection_errors"] > 0, counts
    assert counts["server_errors"] == {}, counts
    assert replies["never_arrived"] == [], replies
    assert replies["arrived_twice"] == [], replies
    assert replies["arrived_once"] == replies["posted"] > USERS
    assert not [k for k in shared.recorder.errors if ":http_5" in k], shared.recorder.errors


async def test_default_mode_counts_errors_without_retrying(
    engine: AsyncEngine, settings: Settings
) -> None:
    # Nothing listens on port 1.
    shared, users = await simulated_users("http://127.0.0.1:1", engine, settings, USERS, None)
    started = time.monotonic()
    await users[0].run()
    assert time.monotonic() - started < backoff(0) * 10
    assert users[0].failed
    assert shared.recorder.errors == {"tones:ConnectError": 1, "create_session:ConnectError": 1}


def test_retry_after_is_read_from_the_delay_form() -> None:
    def answer(**headers: str) -> httpx.Response:
        return httpx.Response(503, headers=headers)

    assert retry_after(answer(**{"retry-after": "3"})) == 3.0
    assert retry_after(answer()) is None
    assert retry_after(answer(**{"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None
    assert [backoff(n) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
