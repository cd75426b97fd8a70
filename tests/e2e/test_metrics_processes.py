"""``/metrics`` of a real ``wingmanctl serve`` with two Granian workers and a real SAQ worker.

Requests go out on fresh connections so both web workers serve some of them; the scrape (from
loopback, without a token) must still count every one exactly once, and show the job the
separate worker process ran.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.jobs import wait_until_done
from tests.support.services import child_env, wait_until_ready
from wingman.config import ServerSettings, Settings
from wingman.devstack.processes import free_port, wait_for
from wingman.queues import create_queue, enqueue

pytestmark = pytest.mark.e2e

REQUESTS = 40


@dataclass
class Instance:
    url: str
    web_log: Path


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def instance(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    folder = tmp_path_factory.mktemp("metrics")
    port = free_port()
    local = msgspec.structs.replace(settings, server=ServerSettings(port=port, workers=2))
    env = child_env(local, folder)
    web_log, worker_log = folder / "web.log", folder / "worker.log"
    with web_log.open("wb") as web_out, worker_log.open("wb") as worker_out:
        web = subprocess.Popen(
            [sys.executable, "-m", "wingman", "serve"],
            env=env,
            stdout=web_out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "wingman", "worker", "--queue", "default"],
            env=env,
            stdout=worker_out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    try:
        assert wait_until_ready(url), web_log.read_text()[-3000:]
        yield Instance(url, web_log)
    finally:
        _stop(web)
        _stop(worker)


def value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def serving_pids(log: Path, route: str) -> set[int]:
    pids = set()
    for raw in log.read_text().splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if entry.get("event") == "request" and entry.get("route") == route:
            pids.add(entry["pid"])
    return pids


def test_counts_are_exact_across_web_workers(instance: Instance, settings: Settings) -> None:
    for _ in range(REQUESTS):
        # A new client per request: no keep-alive, so the kernel spreads them over both workers.
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{instance.url}/health/live").status_code == 200
    assert wait_for(lambda: len(serving_pids(instance.web_log, "/health/live")) == 2, 5), (
        "all requests landed on one worker; the test proves nothing"
    )

    text = httpx.get(f"{instance.url}/metrics", timeout=10).text
    labels = {"method": "GET", "route": "/health/live"}
    assert value(text, "wingman_requests_total", **labels, status_code="200") == REQUESTS
    assert value(text, "wingman_request_duration_seconds_count", **labels) == REQUESTS
    # Only the scrape itself is in flight, summed over both workers' live gauges.
    assert value(text, "wingman_requests_in_flight") == 1
    # The pools of both web workers and of the SAQ worker are added up (each may keep
    # pool_size + max_overflow open).
    per_process = settings.database.pool_size + settings.database.max_overflow
    assert value(text, "wingman_db_pool_connections", state="size") == 3 * per_process


async def test_job_metrics_of_a_worker_process_appear(
    instance: Instance, settings: Settings
) -> None:
    queue = create_queue(settings, "default")
    try:
        job = await enqueue(queue, settings, "ping", echo="metrics")
        await wait_until_done(job)
        assert job.status.value == "complete", job.error
    finally:
        await queue.disconnect()
    labels = {"queue": "default", "function": "ping", "status": "complete"}
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{instance.url}/metrics")).text
    assert value(text, "wingman_job_duration_seconds_count", **labels) == 1
    assert value(text, "wingman_queue_depth", queue="default", state="queued") == 0
