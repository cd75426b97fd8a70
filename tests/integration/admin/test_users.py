"""``/api/v1/admin/users``: admin-only search, detail and audited changes."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.admin.conftest import add_user
from tests.support.accounts import Caller
from wingman.db.models import AuditLogEntry, UserStatus
from wingman.domain.admin.services import like_prefix

BASE = "/api/v1/admin/users"
Client = AsyncTestClient[Litestar]


def tag() -> str:
    return f"t{time.time_ns()}"


async def search(client: Client, admin: Caller, **params: Any) -> dict[str, Any]:
    response = await client.get(BASE, params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def emails(page: dict[str, Any]) -> set[str]:
    return {item["email"] for item in page["items"]}


def routes(user_id: UUID) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", BASE, None),
        ("GET", f"{BASE}/{user_id}", None),
        ("PATCH", f"{BASE}/{user_id}", {"tier": "premium"}),
    ]


async def test_anonymous_is_401_and_member_is_403_on_every_route(
    client: Client, member: Caller
) -> None:
    for method, url, body in routes(member.id):
        anonymous = await client.request(method, url, json=body)
        assert anonymous.status_code == 401, (method, url)
        refused = await client.request(method, url, json=body, headers=member.headers)
        assert refused.status_code == 403, (method, url)
        assert refused.json()["type"].endswith("admin-only")


async def test_search_by_email_prefix_any_case(
    client: Client, admin: Caller, engine: AsyncEngine
) -> None:
    prefix = tag()
    await add_user(engine, email=f"{prefix}.ann@example.org")
    await add_user(engine, email=f"{prefix}.bob@example.org")
    await add_user(engine, email=f"x{prefix}.ann@example.org")  # contains, but no prefix match
    page = await search(client, admin, query=f"{prefix.upper()}.A")
    assert emails(page) == {f"{prefix}.ann@example.org"}
    page = await search(client, admin, query=prefix)
    assert emails(page) == {f"{prefix}.ann@example.org", f"{prefix}.bob@example.org"}


async def test_search_by_phone_prefix(client: Client, admin: Caller, engine: AsyncEngine) -> None:
    digits = str(time.time_ns())[-9:]
    first = await add_user(engine, phone=f"+4{digits}1")
    second = await add_user(engine, phone=f"+4{digits}2")
    page = await search(client, admin, query=f"+4{digits}")
    assert {item["id"] for item in page["items"]} == {str(first), str(second)}
    page = await search(client, admin, query=f"+4{digits}2")
    assert [item["id"] for item in page["items"]] == [str(second)]


@pytest.mark.parametrize("wildcard", ["%", "_"])
async def test_like_wildcards_in_the_query_match_literally(
    client: Client, admin: Caller, engine: AsyncEngine, wildcard: str
) -> None:
    prefix = tag()
    literal = f"{prefix}a{wildcard}b@example.org"
    await add_user(engine, email=literal)
    await add_user(engine, email=f"{prefix}axb@example.org")
    page = await search(client, admin, query=f"{prefix}a{wildcard}")
    assert emails(page) == {literal}


def test_like_prefix_escapes_the_escape_character() -> None:
    assert like_prefix("a\\%_b") == "a\\\\\\%\\_b%"


async def test_pages_return_each_user_once_newest_first(
    client: Client, admin: Caller, engine: AsyncEngine
) -> None:
    prefix = tag()
    # Two share a created_at to the microsecond only by chance; ages make the order certain.
    made = [await add_user(engine, email=f"{prefix}-{n}@example.org", age=n) for n in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"query": prefix, "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = await search(client, admin, **params)
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(user_id) for user_id in made]


async def test_forged_cursor_and_oversized_limit_are_refused(client: Client, admin: Caller) -> None:
    forged = await client.get(BASE, params={"cursor": "AAAA"}, headers=admin.headers)
    assert forged.status_code == 400
    assert forged.json()["type"].endswith("invalid-cursor")
    too_many = await client.get(BASE, params={"limit": 101}, headers=admin.headers)
    assert too_many.status_code == 400


async def test_get_one_and_unknown_ids(client: Client, admin: Caller, member: Caller) -> None:
    found = await client.get(f"{BASE}/{member.id}", headers=admin.headers)
    assert found.status_code == 200
    assert found.json()["id"] == str(member.id)
    assert found.json()["role"] == "user"
    for method, url, body in routes(uuid4())[1:]:
        missing = await client.request(method, url, json=body, headers=admin.headers)
        assert missing.status_code == 404, (method, url)
        assert missing.json()["type"].endswith("user-not-found")


async def test_patch_is_audited_with_a_diff_of_changed_fields(
    client: Client, admin: Caller, member: Caller, engine: AsyncEngine
) -> None:
    response = await client.patch(
        f"{BASE}/{member.id}",
        json={"tier": "premium", "role": "user"},  # role unchanged: left out of the diff
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["tier"] == "premium"
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(AuditLogEntry).where(AuditLogEntry.target == f"user:{member.id}")
            )
        ).all()
    assert len(rows) == 1
    entry = rows[0]
    assert entry.action == "users.update"
    assert entry.actor_id == admin.id
    assert entry.actor.startswith("caller-")
    assert entry.details == {"old": {"tier": "free"}, "new": {"tier": "premium"}}


async def test_unchanged_patch_writes_no_audit_row(
    client: Client, admin: Caller, member: Caller, engine: AsyncEngine
) -> None:
    response = await client.patch(
        f"{BASE}/{member.id}", json={"tier": "free"}, headers=admin.headers
    )
    assert response.status_code == 200
    async with engine.connect() as connection:
        count = len(
            (
                await connection.execute(
                    select(AuditLogEntry.id).where(AuditLogEntry.target == f"user:{member.id}")
                )
            ).all()
        )
    assert count == 0


async def test_disabled_user_is_refused_at_once_by_this_process(
    client: Client, admin: Caller, member: Caller
) -> None:
    # The member's active status is now cached (30 s by default) in this process.
    assert (await client.get("/api/v1/me", headers=member.headers)).status_code == 200
    response = await client.patch(
        f"{BASE}/{member.id}", json={"status": "disabled"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "disabled"
    refused = await client.get("/api/v1/me", headers=member.headers)
    assert refused.status_code == 401
    assert refused.json()["type"].endswith("account-disabled")
    enabled = await client.patch(
        f"{BASE}/{member.id}", json={"status": "active"}, headers=admin.headers
    )
    assert enabled.status_code == 200
    assert (await client.get("/api/v1/me", headers=member.headers)).status_code == 200


@pytest.mark.parametrize("body", [{"role": "user"}, {"status": "disabled"}])
async def test_admin_cannot_demote_or_disable_themselves(
    client: Client, admin: Caller, body: dict[str, str]
) -> None:
    response = await client.patch(f"{BASE}/{admin.id}", json=body, headers=admin.headers)
    assert response.status_code == 409
    assert response.json()["type"].endswith("cannot-demote-self")
    still = await client.get(f"{BASE}/{admin.id}", headers=admin.headers)
    assert still.json()["role"] == "admin"
    assert still.json()["status"] == "active"


async def test_admin_can_promote_another_and_change_own_tier(
    client: Client, admin: Caller, member: Caller
) -> None:
    promoted = await client.patch(
        f"{BASE}/{member.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.json()["role"] == "admin"
    own = await client.patch(f"{BASE}/{admin.id}", json={"tier": "premium"}, headers=admin.headers)
    assert own.status_code == 200
    assert own.json()["tier"] == "premium"


async def test_deleted_status_is_not_accepted(
    client: Client, admin: Caller, member: Caller
) -> None:
    response = await client.patch(
        f"{BASE}/{member.id}", json={"status": "deleted"}, headers=admin.headers
    )
    assert response.status_code == 400


async def test_a_deleted_account_keeps_its_status(
    client: Client, admin: Caller, engine: AsyncEngine
) -> None:
    gone = await add_user(engine, email=f"{tag()}@example.org", status=UserStatus.DELETED)
    response = await client.patch(
        f"{BASE}/{gone}", json={"status": "active"}, headers=admin.headers
    )
    assert response.status_code == 409
    assert response.json()["type"].endswith("user-deleted")


async def test_a_query_with_nul_matches_nothing(client: Client, admin: Caller) -> None:
    page = await search(client, admin, query="a\x00")
    assert page == {"items": [], "next_cursor": None}
