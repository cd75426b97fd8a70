"""``GET /metrics`` in-process: who may read it, and what the request middleware records.

The in-process test client's address is not loopback (``testclient``), so these calls are the
"from elsewhere" case: only an admin's token opens the endpoint. Loopback access and the
multi-process figures are covered end to end (tests/e2e/test_metrics_processes.py).
"""

from __future__ import annotations

import time

from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller, create_caller
from wingman.config import Settings
from wingman.queues import create_queue


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Sample name -> value per label set, for one sample name."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def scrape(client: AsyncTestClient[Litestar], caller: Caller) -> str:
    response = await client.get("/metrics", headers=caller.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_refused_without_token_and_to_non_admins(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, settings: Settings
) -> None:
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")

    user = await create_caller(engine, settings)
    refused = await client.get("/metrics", headers=user.headers)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("admin-only")

    forged = await client.get("/metrics", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 401


async def test_counts_route_templates_not_raw_paths(
    client: AsyncTestClient[Litestar], admin: Caller
) -> None:
    before = await scrape(client, admin)
    missing = "/api/v1/sessions/0190a0b4-0000-7000-8000-000000000000"
    for _ in range(3):
        assert (await client.get("/health/live")).status_code == 200
    assert (await client.get(missing, headers=admin.headers)).status_code == 404
    assert (await client.get("/no/such/path/not-a-route")).status_code == 404
    after = await scrape(client, admin)

    def delta(labels: dict[str, str]) -> float:
        key = tuple(sorted(labels.items()))
        name = "wingman_requests_total"
        return samples(after, name).get(key, 0.0) - samples(before, name).get(key, 0.0)

    assert delta({"method": "GET", "route": "/health/live", "status_code": "200"}) == 3
    detail = "/api/v1/sessions/{session_id}"
    assert delta({"method": "GET", "route": detail, "status_code": "404"}) == 1
    assert delta({"method": "GET", "route": "unmatched", "status_code": "404"}) == 1
    # No raw path (with its id) ever becomes a label.
    assert "0190a0b4" not in after
    assert "not-a-route" not in after

    durations = samples(after, "wingman_request_duration_seconds_count")
    live = (("method", "GET"), ("route", "/health/live"))
    earlier = samples(before, "wingman_request_duration_seconds_count").get(live, 0.0)
    assert durations[live] - earlier == 3
    # This very scrape is in flight while the text is produced.
    assert samples(after, "wingman_requests_in_flight")[()] >= 1


async def test_storage_and_queue_gauges_are_present(
    client: AsyncTestClient[Litestar], admin: Caller, settings: Settings
) -> None:
    text = await scrape(client, admin)
    pool = {dict(k)["state"]: v for k, v in samples(text, "wingman_db_pool_connections").items()}
    assert pool["size"] == settings.database.effective_pool_size
    assert pool["size"] >= pool["open"] >= pool["checked_out"] >= 0
    assert pool["open"] >= 1  # the sign-in of the admin went through it
    depth = samples(text, "wingman_queue_depth")
    assert {dict(k)["queue"] for k in depth} == {"ai", "default", "heavy"}
    assert {dict(k)["state"] for k in depth} == {"queued", "active", "scheduled"}
    redis = samples(text, "wingman_redis_command_duration_seconds_count")
    assert sum(redis.values()) > 0


async def test_oldest_waiting_job_age_is_read_from_the_queue(
    client: AsyncTestClient[Litestar], admin: Caller, settings: Settings
) -> None:
    """An hour-old job at the head of a queue shows as its age; none waiting shows 0."""
    # The app's own queue lives on the test client's event loop; this one is on the test's.
    queue = create_queue(settings, "heavy")

    def oldest(text: str) -> dict[str, float]:
        return {
            dict(k)["queue"]: v for k, v in samples(text, "wingman_queue_oldest_seconds").items()
        }

    # Jobs earlier tests left waiting (nothing runs the heavy queue here) are set aside, so the
    # head of the list is this test's job; they are put back afterwards.
    waiting, aside = queue.namespace("queued"), queue.namespace("queued-aside")
    if await queue.redis.exists(waiting):
        await queue.redis.rename(waiting, aside)
    try:
        assert oldest(await scrape(client, admin))["heavy"] == 0
        job = await queue.enqueue("monitoring_probe", timeout=5)
        assert job is not None
        try:
            # Backdate its enqueue time by an hour, as if no worker had taken it since.
            job.queued -= 3_600_000
            job.touched = job.queued
            await queue.redis.set(job.id, queue.serialize(job))
            age = oldest(await scrape(client, admin))["heavy"]
            assert 3_600 <= age < 3_700
            # Put back for a retry a minute ago: the wait counts from then.
            job.touched = int((time.time() - 60) * 1000)
            await queue.redis.set(job.id, queue.serialize(job))
            age = oldest(await scrape(client, admin))["heavy"]
            assert 60 <= age < 120
        finally:
            await queue.abort(job, "test over")
        assert oldest(await scrape(client, admin))["heavy"] == 0
    finally:
        if await queue.redis.exists(aside):
            await queue.redis.rename(aside, waiting)
        await queue.disconnect()
