"""``worker.queues.<queue>.processes`` > 1: ``wingmanctl worker`` runs that many worker processes.

Real processes on the private PostgreSQL and Redis: the command started the way the appliance's
unit starts it (``wingmanctl worker --queue default``, the count from the settings) supervises two
workers that both take jobs, starts a killed one again, stops them all on SIGTERM, and leaves
none behind when it is killed itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from tests.support.jobs import wait_until_done
from tests.support.services import PrivateServices, child_env
from wingman.config import QueueSettings, RedisSettings, Settings
from wingman.queues import create_queue, enqueue

# Redis database of its own, so no other test's workers take these jobs.
REDIS_DB = 6


@pytest.fixture(scope="module")
def two_process_settings(services: PrivateServices, settings: Settings) -> Settings:
    queues = dict(settings.worker.queues)
    queues["default"] = QueueSettings(concurrency=4, timeout=30, retries=1, processes=2)
    return msgspec.structs.replace(
        settings,
        worker=msgspec.structs.replace(settings.worker, queues=queues, shutdown_grace=5),
        redis=RedisSettings(
            queue_url=services.redis_queue.url(REDIS_DB), cache_url=services.redis_cache.url()
        ),
    )


class Output:
    """The supervisor's and its children's output, collected by a thread (lines as text)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout

        def read() -> None:
            for line in stream:
                self.lines.append(line.decode(errors="replace"))

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()

    def count(self, marker: str) -> int:
        return sum(marker in line for line in self.lines)

    def text(self) -> str:
        return "".join(self.lines)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Zombies are exited processes not yet reaped: not running workers.
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def supervisor(
    two_process_settings: Settings, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Output]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wingman", "worker", "--queue", "default"],
        env=child_env(two_process_settings, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = Output(proc)
    try:
        yield proc, output
    finally:
        if proc.poll() is None:
            leftover = children_of(proc.pid)
            proc.kill()
            proc.wait(10)
            for pid in leftover:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


async def ping_pids(settings: Settings, jobs: int) -> set[int]:
    """Enqueue ``jobs`` pings at once; the process ids of the workers that ran them."""
    queue = create_queue(settings, "default")
    try:
        enqueued = [await enqueue(queue, settings, "ping", echo=str(i)) for i in range(jobs)]
        pids = set()
        for job in enqueued:
            assert job is not None
            await wait_until_done(job)
            assert job.status == "complete", job.error
            pids.add(job.result["worker_pid"])
        return pids
    finally:
        await queue.disconnect()


def both_take_jobs(settings: Settings, expected: set[int]) -> set[int]:
    """Send pings until every one of ``expected`` has run one (rounds of 40 pings, up to 30 s)."""
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while not expected <= seen and time.monotonic() < deadline:
        seen |= asyncio.run(ping_pids(settings, 40))
    return seen


def test_processes_from_the_settings_all_take_jobs_and_stop_on_sigterm(
    two_process_settings: Settings, supervisor: tuple[subprocess.Popen[bytes], Output]
) -> None:
    proc, output = supervisor
    wait_for(lambda: output.count("worker_started") >= 2, 60, "two workers to start")
    workers = children_of(proc.pid)
    assert len(workers) == 2, output.text()

    seen = both_take_jobs(two_process_settings, workers)
    # Every job ran in one of the two children, and each child ran some.
    assert seen == workers, (seen, workers)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, output.text()
    output.thread.join(10)
    assert output.count("worker_stopped") == 2, output.text()
    assert not any(alive(pid) for pid in workers)


def test_a_worker_process_that_dies_is_started_again(
    two_process_settings: Settings, supervisor: tuple[subprocess.Popen[bytes], Output]
) -> None:
    proc, output = supervisor
    wait_for(lambda: output.count("worker_started") >= 2, 60, "two workers to start")
    first = children_of(proc.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)

    wait_for(
        lambda: len(children_of(proc.pid) - {victim}) == 2 and output.count("worker_started") >= 3,
        90,  # the restart delay, then a process start: tens of seconds on a busy host
        "a replacement worker",
    )
    now = children_of(proc.pid)
    assert victim not in now
    assert len(now) == 2
    # The replacement takes jobs like the survivor.
    assert both_take_jobs(two_process_settings, now) == now

    # A supervisor killed outright leaves no worker behind: each gets SIGTERM and stops.
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in now), 30, "the orphaned workers to stop")
