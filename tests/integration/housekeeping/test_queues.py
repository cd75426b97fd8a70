"""The admin's queue view and ``wingmanctl queues``/``audit`` against a real heavy worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from saq.job import Job, Status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller
from tests.support.cli import bad_settings_env, run_cli
from tests.support.jobs import wait_until_done
from tests.support.services import child_env
from wingman.config import Settings
from wingman.db.models import AuditLogEntry
from wingman.queues import create_queue, enqueue

Client = AsyncTestClient[Litestar]


def ctl(settings: Settings, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("wingman.ctl", *args, env=child_env(settings, folder), timeout=60)


def heavy(view: dict[str, Any]) -> dict[str, Any]:
    (queue,) = [queue for queue in view["queues"] if queue["name"] == "heavy"]
    return queue


async def failing_job(settings: Settings) -> Job:
    """A job that fails for real in the worker: an import id that is not a UUID."""
    queue = create_queue(settings, "heavy")
    try:
        job = await enqueue(
            queue, settings, "import_transcript", key=f"bad-{time.time_ns()}", import_id="nope"
        )
        assert job is not None
        return await wait_until_done(job)
    finally:
        await queue.disconnect()


async def test_a_failed_job_is_listed_with_its_error_and_runs_again_on_retry(
    *,
    hk_client: Client,
    operator: Caller,
    owner: Caller,
    hk_settings: Settings,
    hk_engine: AsyncEngine,
    heavy_worker: subprocess.Popen[bytes],
) -> None:
    job = await failing_job(hk_settings)
    assert job.status is Status.FAILED
    first_finish = job.completed

    view = await hk_client.get("/api/v1/admin/queues", headers=operator.headers)
    assert view.status_code == 200, view.text
    failed = {item["key"]: item for item in heavy(view.json())["failed"]}
    assert job.key in failed
    assert failed[job.key]["function"] == "import_transcript"
    assert "ValueError" in failed[job.key]["error"]
    assert heavy(view.json())["failed_total"] >= 1
    assert {"queued", "active", "scheduled", "workers", "running", "waiting"} <= set(
        heavy(view.json())
    )
    assert heavy(view.json())["workers"] >= 1

    refused = await hk_client.get("/api/v1/admin/queues", headers=owner.headers)
    assert refused.status_code == 403

    retried = await hk_client.post(
        f"/api/v1/admin/queues/heavy/jobs/{job.key}/retry", headers=operator.headers
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "queued"
    # It runs again, and fails again, later than the first time.
    deadline = time.monotonic() + 30
    while True:
        await job.refresh()
        if job.status is Status.FAILED and job.completed > first_finish:
            break
        assert time.monotonic() < deadline, job.status
        await asyncio.sleep(0.05)

    again = await hk_client.post(
        f"/api/v1/admin/queues/heavy/jobs/{job.key}/abort", headers=operator.headers
    )
    assert again.status_code == 409
    assert again.json()["job_status"] == "failed"
    queue = create_queue(hk_settings, "heavy")
    try:
        later = await enqueue(
            queue, hk_settings, "ping", key=f"later-{time.time_ns()}", scheduled=time.time() + 3600
        )
        assert later is not None
        aborted = await hk_client.post(
            f"/api/v1/admin/queues/heavy/jobs/{later.key}/abort", headers=operator.headers
        )
        assert aborted.status_code == 200, aborted.text
        await later.refresh()
        assert later.status is Status.ABORTED
    finally:
        await queue.disconnect()
    missing = await hk_client.post(
        "/api/v1/admin/queues/heavy/jobs/no-such-key/retry", headers=operator.headers
    )
    assert missing.status_code == 404
    unknown = await hk_client.post(
        f"/api/v1/admin/queues/nope/jobs/{job.key}/retry", headers=operator.headers
    )
    assert unknown.status_code == 404
    async with hk_engine.connect() as connection:
        audited = (
            await connection.execute(
                select(AuditLogEntry.action, AuditLogEntry.actor_id).where(
                    AuditLogEntry.target == f"job:heavy:{job.key}"
                )
            )
        ).all()
    # The retry is audited under the admin; refused and unknown ones are not.
    assert [(row.action, row.actor_id) for row in audited] == [("queues.retry", operator.id)]


async def test_cli_lists_aborts_and_audits(
    hk_settings: Settings, tmp_path: Path, heavy_worker: subprocess.Popen[bytes]
) -> None:
    failed = await failing_job(hk_settings)
    queue = create_queue(hk_settings, "heavy")
    try:
        # Scheduled an hour ahead: it waits, so there is something to abort.
        waiting = await enqueue(
            queue, hk_settings, "ping", key=f"later-{time.time_ns()}", scheduled=time.time() + 3600
        )
        assert waiting is not None
    finally:
        await queue.disconnect()

    listed = ctl(hk_settings, tmp_path, "queues", "--json")
    assert listed.returncode == 0, listed.stderr
    queue_view = heavy(json.loads(listed.stdout))
    assert failed.key in {item["key"] for item in queue_view["failed"]}
    assert waiting.key in {item["key"] for item in queue_view["waiting"]}
    table = ctl(hk_settings, tmp_path, "queues")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if failed.key in line)
    assert "failed" in row
    assert "import_transcript" in row
    assert "ValueError" in row

    aborted = ctl(hk_settings, tmp_path, "queues", "abort", "heavy", waiting.key, "--json")
    assert aborted.returncode == 0, aborted.stderr
    assert json.loads(aborted.stdout)["key"] == waiting.key
    assert json.loads(aborted.stdout)["status"] == "aborted"
    twice = ctl(hk_settings, tmp_path, "queues", "abort", "heavy", waiting.key)
    assert twice.returncode == 3, twice.stderr
    retried = ctl(hk_settings, tmp_path, "queues", "retry", "heavy", failed.key, "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["status"] == "queued"

    audit = ctl(hk_settings, tmp_path, "audit", "--action", "queues.*", "--since", "1h", "--json")
    assert audit.returncode == 0, audit.stderr
    entries = json.loads(audit.stdout)
    ours = {
        (entry["action"], entry["target"]): entry
        for entry in entries
        if entry["target"] in (f"job:heavy:{waiting.key}", f"job:heavy:{failed.key}")
    }
    assert set(ours) == {
        ("queues.abort", f"job:heavy:{waiting.key}"),
        ("queues.retry", f"job:heavy:{failed.key}"),
    }
    assert all(entry["actor"].startswith("cli") for entry in ours.values())
    retry_entry = ours["queues.retry", f"job:heavy:{failed.key}"]
    assert retry_entry["details"] == {"function": "import_transcript", "status": "queued"}
    # Newest first.
    assert [entry["created_at"] for entry in entries] == sorted(
        (entry["created_at"] for entry in entries), reverse=True
    )
    readable = ctl(hk_settings, tmp_path, "audit", "--actor", "cli*", "--limit", "5")
    assert readable.returncode == 0, readable.stderr
    assert "queues.retry" in readable.stdout
    bad_since = ctl(hk_settings, tmp_path, "audit", "--since", "yesterday")
    assert bad_since.returncode == 64


def test_an_unreachable_database_is_named_with_exit_2(tmp_path: Path) -> None:
    env = bad_settings_env(
        tmp_path, '[database]\nurl = "postgresql+psycopg://wingman:x@127.0.0.1:1/wingman"\n'
    )
    result = run_cli("wingman.ctl", "audit", env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot reach the database:")
    assert "Traceback" not in result.stderr
