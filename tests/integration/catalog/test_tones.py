"""Tones: the seeded set, the client list, admin CRUD, guards and the audit trail."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from wingman.config import Settings
from wingman.db.models import AuditLogEntry

SEEDED = ["friendly", "playful", "flirty", "confident", "formal", "witty"]


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(settings.database.url)
    try:
        yield engine
    finally:
        await engine.dispose()


def new_slug() -> str:
    return f"tone-{time.time_ns()}"


async def audit_rows(engine: AsyncEngine, target: str) -> list[AuditLogEntry]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(AuditLogEntry).where(AuditLogEntry.target == target).order_by(AuditLogEntry.id)
        )
        return list(rows.mappings())  # type: ignore[arg-type]


async def test_seeded_tones_are_listed_in_order_with_no_prompt(
    client: AsyncTestClient[Litestar], user_headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/tones", headers=user_headers)
    assert response.status_code == 200, response.text
    tones = response.json()
    slugs = [tone["slug"] for tone in tones]
    assert [slug for slug in slugs if slug in SEEDED] == SEEDED
    keys = [(tone["sort_order"], tone["name"]) for tone in tones]
    assert keys == sorted(keys)
    assert all("prompt" not in tone for tone in tones)


async def test_seeded_tones_carry_a_prompt_fragment(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/admin/tones", headers=admin_headers)
    assert response.status_code == 200, response.text
    seeded = {tone["slug"]: tone for tone in response.json() if tone["slug"] in SEEDED}
    assert set(seeded) == set(SEEDED)
    for tone in seeded.values():
        assert len(tone["prompt"]) > 40
        assert tone["description"]
        assert tone["is_active"] is True


async def test_tones_need_a_signed_in_caller(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/api/v1/tones")).status_code == 401
    assert (await client.get("/api/v1/config")).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/admin/tones"),
        ("POST", "/api/v1/admin/tones"),
        ("PATCH", "/api/v1/admin/tones/0190f5a0-0000-7000-8000-000000000000"),
        ("DELETE", "/api/v1/admin/tones/0190f5a0-0000-7000-8000-000000000000"),
        ("GET", "/api/v1/admin/config"),
        ("GET", "/api/v1/admin/config/features"),
        ("PUT", "/api/v1/admin/config/features"),
    ],
)
async def test_admin_routes_refuse_anonymous_and_plain_users(
    client: AsyncTestClient[Litestar], user_headers: dict[str, str], method: str, path: str
) -> None:
    body: dict[str, Any] = {"slug": "x", "name": "x", "prompt": "x"}
    anonymous = await client.request(method, path, json=body)
    assert anonymous.status_code == 401, anonymous.text
    plain = await client.request(method, path, json=body, headers=user_headers)
    assert plain.status_code == 403, plain.text
    assert plain.json()["type"] == "urn:wingman:problem:admin-only"


async def test_admin_creates_patches_and_deactivates_a_tone(
    client: AsyncTestClient[Litestar],
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    user_headers: dict[str, str],
    engine: AsyncEngine,
) -> None:
    slug = new_slug()
    created = await client.post(
        "/api/v1/admin/tones",
        json={"slug": slug, "name": "Calm", "prompt": "Stay calm and kind.", "sort_order": -5},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    tone = created.json()
    listed = (await client.get("/api/v1/tones", headers=user_headers)).json()
    assert listed[0]["slug"] == slug  # lowest sort_order first

    patched = await client.patch(
        f"/api/v1/admin/tones/{tone['id']}", json={"name": "Serene"}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Serene"
    listed = (await client.get("/api/v1/tones", headers=user_headers)).json()
    assert {t["slug"]: t["name"] for t in listed}[slug] == "Serene"

    gone = await client.delete(f"/api/v1/admin/tones/{tone['id']}", headers=admin_headers)
    assert gone.status_code == 204, gone.text
    listed = (await client.get("/api/v1/tones", headers=user_headers)).json()
    assert slug not in {t["slug"] for t in listed}
    everything = (await client.get("/api/v1/admin/tones", headers=admin_headers)).json()
    assert {t["slug"]: t["is_active"] for t in everything}[slug] is False

    rows = await audit_rows(engine, f"tone:{tone['id']}")
    assert [row["action"] for row in rows] == ["tones.create", "tones.update", "tones.deactivate"]
    assert all(
        row["actor_id"] is not None and str(row["actor_id"]) == admin["user"]["id"] for row in rows
    )
    assert all(row["actor"] == admin["user"]["email"] for row in rows)
    assert rows[1]["details"] == {"old": {"name": "Calm"}, "new": {"name": "Serene"}}


async def test_duplicate_slug_is_a_conflict(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str]
) -> None:
    slug = new_slug()
    body = {"slug": slug, "name": "One", "prompt": "Be brief."}
    assert (
        await client.post("/api/v1/admin/tones", json=body, headers=admin_headers)
    ).status_code == 201
    again = await client.post("/api/v1/admin/tones", json=body, headers=admin_headers)
    assert again.status_code == 409, again.text
    assert again.json()["type"] == "urn:wingman:problem:tone-slug-taken"
    other = await client.post(
        "/api/v1/admin/tones", json={**body, "slug": new_slug()}, headers=admin_headers
    )
    renamed = await client.patch(
        f"/api/v1/admin/tones/{other.json()['id']}", json={"slug": slug}, headers=admin_headers
    )
    assert renamed.status_code == 409, renamed.text


async def test_bad_tone_bodies_name_the_field(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/admin/tones",
        json={"slug": "Has Spaces", "name": "x", "prompt": "y"},
        headers=admin_headers,
    )
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "urn:wingman:problem:validation-failed"
    assert "slug" in response.text
    nul = await client.post(
        "/api/v1/admin/tones",
        json={"slug": "nul-name", "name": "a\u0000b", "prompt": "y"},
        headers=admin_headers,
    )
    assert nul.status_code == 400, nul.text
    assert nul.json()["errors"][0]["key"] == "name"
    missing = await client.patch(
        "/api/v1/admin/tones/0190f5a0-0000-7000-8000-000000000000",
        json={"name": "x"},
        headers=admin_headers,
    )
    assert missing.status_code == 404
    assert missing.json()["type"] == "urn:wingman:problem:tone-not-found"
