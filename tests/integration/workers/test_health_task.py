"""SAQ workers as real processes: a health task goes through Redis and PostgreSQL and back."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.support.cli import bad_settings_env, run_cli
from tests.support.jobs import wait_until_done
from tests.support.services import PrivateServices, child_env
from wingman.config import RedisSettings, Settings
from wingman.queues import create_queue, enqueue, job_options

# A queue Redis database of this module's own: on the shared one, the ``ai`` queue holds the
# replies other tests' messages enqueued, and a ping would wait behind that backlog.
REDIS_DB = 9


@pytest.fixture(scope="module")
def own_queue(services: PrivateServices, settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings,
        redis=RedisSettings(
            queue_url=services.redis_queue.url(REDIS_DB), cache_url=services.redis_cache.url()
        ),
    )


@pytest.fixture
def worker_process(
    own_queue: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[subprocess.Popen[bytes]]:
    queue_name = getattr(request, "param", "default")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wingman", "worker", "--queue", queue_name],
        env=child_env(own_queue, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("worker_process", ["default", "ai"], indirect=True)
async def test_ping_round_trip(
    own_queue: Settings, worker_process: subprocess.Popen[bytes]
) -> None:
    name = worker_process.args[-1]  # type: ignore[index]
    queue = create_queue(own_queue, name)
    try:
        job = await enqueue(queue, own_queue, "ping", echo="hello")
        assert job is not None
        await wait_until_done(job)
    finally:
        await queue.disconnect()
    assert job.status == "complete", job.error
    result = job.result
    assert result["echo"] == "hello"
    assert result["queue"] == name
    assert result["database"] == "ok"
    assert result["worker_pid"] == worker_process.pid


async def test_jobs_carry_the_queue_settings(settings: Settings) -> None:
    queue = create_queue(settings, "heavy")
    try:
        job = await enqueue(queue, settings, "ping", key="settings-check", echo="x")
        again = await enqueue(queue, settings, "ping", key="settings-check", echo="x")
        options = job_options(settings, "heavy")
        assert job is not None
        assert job.timeout == options["timeout"] == 3600
        assert job.heartbeat == options["heartbeat"]
        assert job.retries == options["retries"]
        # Same key while the first is queued: SAQ collapses the duplicate.
        assert again is None
        await job.abort("test done")
    finally:
        await queue.disconnect()


def test_worker_stops_cleanly_on_sigterm(worker_process: subprocess.Popen[bytes]) -> None:
    assert worker_process.stdout is not None
    # Wait until it has started (its start-up line), then ask it to stop.
    for line in worker_process.stdout:
        if b"worker_started" in line:
            break
    worker_process.send_signal(signal.SIGTERM)
    assert worker_process.wait(30) == 0
    rest = worker_process.stdout.read()
    assert b"worker_stopped" in rest


def test_bad_settings_stop_the_worker_with_a_clear_message(tmp_path: Path) -> None:
    env = bad_settings_env(tmp_path, "[worker]\nshutdown_grace = 'soon'\n")
    result = run_cli("wingman.ctl", "worker", "--queue", "ai", env=env)
    assert result.returncode == 1
    assert "worker.shutdown_grace" in result.stderr
    assert "Traceback" not in result.stderr
