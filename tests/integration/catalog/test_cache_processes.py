"""The catalog cache across processes: an admin change reaches a running server within 1 s."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.catalog.conftest import bearer
from tests.support.services import child_env, wait_until_ready
from wingman.config import Settings
from wingman.db.models import Tone
from wingman.devstack.processes import free_port

PROPAGATION_BUDGET = 1.0


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``wingmanctl serve`` process (its own cache, its own subscription)."""
    folder = tmp_path_factory.mktemp("catalog-server")
    port = free_port()
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "wingman", "serve", "--port", str(port), "--workers", "1"],
        env=child_env(settings, folder),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    try:
        if not wait_until_ready(url):
            pytest.fail(f"server did not get ready:\n{Path(log.name).read_text()}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def tone_names(url: str, headers: dict[str, str]) -> dict[str, str]:
    response = httpx.get(f"{url}/api/v1/tones", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    return {tone["slug"]: tone["name"] for tone in response.json()}


def config_limit(url: str, headers: dict[str, str]) -> int:
    response = httpx.get(f"{url}/api/v1/config", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    return int(response.json()["limits.message"]["max_content_length"])


def wait_until(check: Any, budget: float) -> float:
    """Seconds until ``check()`` held; fails past ``budget``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > budget:
            pytest.fail(f"the running server still served the old value after {budget} s")
        time.sleep(0.02)


async def test_admin_tone_change_reaches_another_process_within_a_second(
    server: str,
    settings: Settings,
    client: AsyncTestClient[Litestar],
    admin: dict[str, Any],
    admin_headers: dict[str, str],
) -> None:
    headers = bearer(admin)  # the server shares the signing key
    slug = f"cross-{time.time_ns()}"
    created = await client.post(
        "/api/v1/admin/tones",
        json={"slug": slug, "name": "Before", "prompt": "Say it plainly."},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    tone_id = created.json()["id"]
    wait_until(lambda: tone_names(server, headers).get(slug) == "Before", PROPAGATION_BUDGET)

    # Proof that the server answers from its cache: a change behind its back (no announcement)
    # is not seen.
    engine = create_async_engine(settings.database.url)
    try:
        async with engine.begin() as connection:
            await connection.execute(update(Tone).where(Tone.id == tone_id).values(name="Hidden"))
    finally:
        await engine.dispose()
    assert tone_names(server, headers)[slug] == "Before"

    patched = await client.patch(
        f"/api/v1/admin/tones/{tone_id}", json={"name": "After"}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    took = wait_until(lambda: tone_names(server, headers).get(slug) == "After", PROPAGATION_BUDGET)
    assert took <= PROPAGATION_BUDGET


async def test_admin_config_change_reaches_another_process_within_a_second(
    server: str,
    client: AsyncTestClient[Litestar],
    admin: dict[str, Any],
    admin_headers: dict[str, str],
) -> None:
    headers = bearer(admin)
    before = config_limit(server, headers)
    wanted = 1000 + (before % 997) + 1
    response = await client.put(
        "/api/v1/admin/config/limits.message",
        json={"max_content_length": wanted},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    try:
        wait_until(lambda: config_limit(server, headers) == wanted, PROPAGATION_BUDGET)
    finally:
        reset = await client.put(
            "/api/v1/admin/config/limits.message", json={}, headers=admin_headers
        )
        assert reset.status_code == 200
