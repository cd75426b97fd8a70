"""Global config: the public subset, admin reads and writes, validation and the audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from wingman.config import Settings
from wingman.db.models import AuditLogEntry, GlobalConfig
from wingman.domain.catalog.registry import REGISTRY


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(settings.database.url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def pristine_config(engine: AsyncEngine) -> AsyncIterator[None]:
    """Defaults in force before and after the test (other tests read limits)."""
    async with engine.begin() as connection:
        await connection.execute(delete(GlobalConfig))
    yield
    async with engine.begin() as connection:
        await connection.execute(delete(GlobalConfig))


async def test_public_config_holds_only_public_keys_and_fields(
    client: AsyncTestClient[Litestar], user_headers: dict[str, str], pristine_config: None
) -> None:
    response = await client.get("/api/v1/config", headers=user_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"features", "limits.message", "rate_limits", "privacy"}
    assert body["privacy"] == {"deletion_grace_days": 7}
    assert body["limits.message"] == {"max_content_length": 4000}
    assert body["features"]["sign_up"] is True
    assert set(body["rate_limits"]) == {"chat", "chat_premium", "ai", "ai_premium"}
    assert body["rate_limits"]["chat"] == {"limit": 60, "period": "minute"}
    assert "ai" not in body


async def test_admin_lists_every_key_with_defaults(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str], pristine_config: None
) -> None:
    response = await client.get("/api/v1/admin/config", headers=admin_headers)
    assert response.status_code == 200, response.text
    items = {item["key"]: item for item in response.json()}
    assert set(items) == set(REGISTRY)
    assert all(
        item["stored"] is False and item["value"] == item["default"] for item in items.values()
    )
    limits = items["rate_limits"]["value"]
    assert limits["anon"] == {"limit": 100, "period": "hour"}
    assert limits["user"] == {"limit": 10_000, "period": "hour"}
    assert limits["premium"] == {"limit": 50_000, "period": "hour"}
    assert limits["otp"] == {"limit": 5, "period": "minute"}
    assert limits["ai"] == {"limit": 20, "period": "minute"}
    assert limits["ai_premium"] == {"limit": 100, "period": "minute"}
    assert items["ai"]["public_fields"] == []


async def test_put_stores_audits_and_is_served_at_once(
    *,
    client: AsyncTestClient[Litestar],
    admin: dict[str, Any],
    admin_headers: dict[str, str],
    user_headers: dict[str, str],
    engine: AsyncEngine,
    pristine_config: None,
) -> None:
    # Warm this process's cache first: the write must drop it.
    before = await client.get("/api/v1/config", headers=user_headers)
    assert before.json()["limits.message"]["max_content_length"] == 4000

    response = await client.put(
        "/api/v1/admin/config/limits.message",
        json={"max_content_length": 1200},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    item = response.json()
    assert item["value"] == {"max_content_length": 1200}
    assert item["stored"] is True
    assert item["updated_by"] == admin["user"]["id"]

    after = await client.get("/api/v1/config", headers=user_headers)
    assert after.json()["limits.message"] == {"max_content_length": 1200}
    one = await client.get("/api/v1/admin/config/limits.message", headers=admin_headers)
    assert one.json()["value"] == {"max_content_length": 1200}

    async with engine.connect() as connection:
        rows = (
            (
                await connection.execute(
                    select(AuditLogEntry).where(AuditLogEntry.target == "config:limits.message")
                )
            )
            .mappings()
            .all()
        )
    assert len(rows) >= 1
    last = rows[-1]
    assert last["action"] == "config.set"
    assert str(last["actor_id"]) == admin["user"]["id"]
    assert last["details"] == {
        "old": {"max_content_length": 4000},
        "new": {"max_content_length": 1200},
    }


async def test_partial_values_take_defaults_for_the_rest(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str], pristine_config: None
) -> None:
    response = await client.put(
        "/api/v1/admin/config/ai", json={"model": "llama-3.1-8b"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    value = response.json()["value"]
    assert value["model"] == "llama-3.1-8b"
    assert value["context_messages"] == 20


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("limits.message", {"max_content_length": 0}, "max_content_length"),
        ("limits.message", {"max_content_length": "long"}, "max_content_length"),
        ("features", {"sign_up": "yes"}, "sign_up"),
        ("features", {"sing_up": True}, "sing_up"),
        ("rate_limits", {"chat": {"limit": 10, "period": "fortnight"}}, "chat.period"),
        ("ai", {"max_tokens": -3}, "max_tokens"),
    ],
)
async def test_bad_values_are_refused_naming_the_field(
    *,
    client: AsyncTestClient[Litestar],
    admin_headers: dict[str, str],
    pristine_config: None,
    key: str,
    value: dict[str, Any],
    field: str,
) -> None:
    response = await client.put(f"/api/v1/admin/config/{key}", json=value, headers=admin_headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:wingman:problem:validation-failed"
    assert problem["errors"][0]["key"] == field
    stored = await client.get(f"/api/v1/admin/config/{key}", headers=admin_headers)
    assert stored.json()["stored"] is False


async def test_unknown_key_is_not_found(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str]
) -> None:
    for response in (
        await client.get("/api/v1/admin/config/nope", headers=admin_headers),
        await client.put("/api/v1/admin/config/nope", json={}, headers=admin_headers),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "urn:wingman:problem:config-key-not-found"
