"""``/api/v1/me`` and ``/api/v1/me/settings``; last-seen bookkeeping."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.accounts.conftest import bearer
from wingman.config import Settings


async def test_patch_me_changes_only_given_fields(
    client: AsyncTestClient[Litestar], signed_in: dict[str, Any]
) -> None:
    headers = bearer(signed_in)
    first = await client.patch(
        "/api/v1/me",
        json={"display_name": "  Sam  ", "locale": "pt-BR", "timezone": "Europe/Berlin"},
        headers=headers,
    )
    assert first.status_code == 200, first.text
    assert (first.json()["display_name"], first.json()["locale"], first.json()["timezone"]) == (
        "Sam",
        "pt-BR",
        "Europe/Berlin",
    )
    second = await client.patch("/api/v1/me", json={"locale": None}, headers=headers)
    assert second.json()["locale"] is None
    assert second.json()["display_name"] == "Sam"
    assert (await client.get("/api/v1/me", headers=headers)).json()["timezone"] == "Europe/Berlin"


async def test_patch_me_validates(
    client: AsyncTestClient[Litestar], signed_in: dict[str, Any]
) -> None:
    headers = bearer(signed_in)
    for body, key in (
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"locale": "not a tag"}, "locale"),
        ({"display_name": "x" * 101}, "display_name"),
        ({"tier": "premium"}, None),
    ):
        response = await client.patch("/api/v1/me", json=body, headers=headers)
        assert response.status_code == 400, (body, response.text)
        if key:
            assert key in response.text
    me = (await client.get("/api/v1/me", headers=headers)).json()
    assert me["tier"] == "free"


async def test_settings_default_then_replace(
    client: AsyncTestClient[Litestar], signed_in: dict[str, Any], settings: Settings
) -> None:
    headers = bearer(signed_in)
    defaults = await client.get("/api/v1/me/settings", headers=headers)
    assert defaults.status_code == 200
    assert defaults.json() == {"default_tone_id": None, "reply_length": "medium", "language": None}

    tone_id = uuid.uuid4()
    engine = create_async_engine(settings.database.url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO tones (id, slug, name, prompt) VALUES (:id, :slug, 'T', 'p')"),
                {"id": tone_id, "slug": f"tone-{tone_id.hex[:8]}"},
            )
    finally:
        await engine.dispose()

    body = {"default_tone_id": str(tone_id), "reply_length": "short", "language": "de"}
    stored = await client.put("/api/v1/me/settings", json=body, headers=headers)
    assert stored.status_code == 200, stored.text
    assert stored.json() == body
    again = await client.put("/api/v1/me/settings", json={"reply_length": "long"}, headers=headers)
    assert again.json() == {"default_tone_id": None, "reply_length": "long", "language": None}
    assert (await client.get("/api/v1/me/settings", headers=headers)).json()[
        "reply_length"
    ] == "long"

    unknown = await client.put(
        "/api/v1/me/settings", json={"default_tone_id": str(uuid.uuid4())}, headers=headers
    )
    assert unknown.status_code == 400
    assert "default_tone_id" in unknown.text


async def test_last_seen_is_written_at_most_once_a_minute(
    client: AsyncTestClient[Litestar], signed_in: dict[str, Any], settings: Settings
) -> None:
    headers = bearer(signed_in)
    assert signed_in["user"]["last_seen_at"] is None
    first = (await client.get("/api/v1/me", headers=headers)).json()["last_seen_at"]
    assert first is not None
    second = (await client.get("/api/v1/me", headers=headers)).json()["last_seen_at"]
    assert second == first


async def test_me_needs_a_token(client: AsyncTestClient[Litestar]) -> None:
    for method, path in (("GET", "/api/v1/me"), ("GET", "/api/v1/me/settings")):
        response = await client.request(method, path)
        assert response.status_code == 401
        assert response.json()["type"] == "urn:wingman:problem:unauthorized"
    # Public routes stay public.
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/api/docs/openapi.json")).status_code == 200
