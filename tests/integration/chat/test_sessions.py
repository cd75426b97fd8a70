"""Sessions: create with a profile and tone, patch, archive, delete, list by recent activity."""

from __future__ import annotations

import base64

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.chat.conftest import add_tone, new_session, post_message
from tests.support.accounts import Caller

SESSIONS = "/api/v1/sessions"


async def test_session_lifecycle(
    client: AsyncTestClient[Litestar], alice: Caller, engine: AsyncEngine
) -> None:
    tone_id = str(await add_tone(engine))
    profile = (
        await client.post(
            "/api/v1/profiles",
            json={
                "name": "Kim",
                "notes": "met at the climbing gym",
                "interests": ["bouldering"],
                "attributes": {"city": "Lyon"},
            },
            headers=alice.headers,
        )
    ).json()
    chat = await new_session(
        client, alice, title="First date", profile_id=profile["id"], tone_id=tone_id
    )
    tone = next(
        {"id": t["id"], "slug": t["slug"], "name": t["name"]}
        for t in (await client.get("/api/v1/tones", headers=alice.headers)).json()
        if t["id"] == tone_id
    )
    assert chat["status"] == "active"
    assert chat["message_count"] == 0
    assert chat["last_message_at"] is None

    url = f"{SESSIONS}/{chat['id']}"
    detail = (await client.get(url, headers=alice.headers)).json()
    assert detail["session"] == chat
    # The profile as its own route shows it, and the tone's brief, from one joined row.
    assert detail["profile"] == profile
    assert detail["tone"] == tone
    assert detail["messages"] == {"items": [], "next_cursor": None}

    patched = await client.patch(
        url, json={"title": None, "tone_id": None, "status": "archived"}, headers=alice.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] is None
    assert patched.json()["tone_id"] is None
    assert patched.json()["profile_id"] == profile["id"]
    assert patched.json()["status"] == "archived"
    reactivated = await client.patch(url, json={"status": "active"}, headers=alice.headers)
    assert reactivated.json()["status"] == "active"

    await post_message(client, alice, chat["id"], content="hi")
    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404
    listed = (await client.get(SESSIONS, headers=alice.headers)).json()
    assert chat["id"] not in [item["id"] for item in listed["items"]]


async def test_references_must_be_usable(
    client: AsyncTestClient[Litestar], alice: Caller, bob: Caller, engine: AsyncEngine
) -> None:
    inactive = str(await add_tone(engine, active=False))
    bobs_profile = (
        await client.post("/api/v1/profiles", json={"name": "B"}, headers=bob.headers)
    ).json()["id"]
    for body, problem in [
        ({"tone_id": inactive}, "tone-not-found"),
        ({"tone_id": "0190a000-0000-7000-8000-000000000000"}, "tone-not-found"),
        ({"profile_id": bobs_profile}, "profile-not-found"),
    ]:
        response = await client.post(SESSIONS, json=body, headers=alice.headers)
        assert response.status_code == 404, response.text
        assert response.json()["type"] == f"urn:wingman:problem:{problem}"
        chat = await new_session(client, alice)
        patched = await client.patch(f"{SESSIONS}/{chat['id']}", json=body, headers=alice.headers)
        assert patched.status_code == 404
    # Deleting a profile leaves its sessions, without one.
    mine = (await client.post("/api/v1/profiles", json={"name": "A"}, headers=alice.headers)).json()
    chat = await new_session(client, alice, profile_id=mine["id"])
    await client.delete(f"/api/v1/profiles/{mine['id']}", headers=alice.headers)
    detail = (await client.get(f"{SESSIONS}/{chat['id']}", headers=alice.headers)).json()
    assert detail["session"]["profile_id"] is None
    assert detail["profile"] is None


async def test_list_by_recent_activity(client: AsyncTestClient[Litestar], alice: Caller) -> None:
    ids = [(await new_session(client, alice, title=f"s{n}"))["id"] for n in range(5)]
    # A message makes the oldest session the most recently active.
    await post_message(client, alice, ids[0], content="back again")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(SESSIONS, params=params, headers=alice.headers)
        assert response.status_code == 200, response.text
        seen += [item["id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [ids[0], ids[4], ids[3], ids[2], ids[1]]


async def test_bad_cursors_and_limits(client: AsyncTestClient[Litestar], alice: Caller) -> None:
    for _ in range(3):
        chat = await new_session(client, alice)
    page = (await client.get(SESSIONS, params={"limit": 1}, headers=alice.headers)).json()
    cursor = page["next_cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[3] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    await post_message(client, alice, chat["id"], content="x")
    messages_cursor = (
        await client.get(
            f"{SESSIONS}/{chat['id']}/messages", params={"limit": 1}, headers=alice.headers
        )
    ).json()["next_cursor"]
    for bad in [tampered, "not a cursor", "AAAA", messages_cursor]:
        response = await client.get(SESSIONS, params={"cursor": bad}, headers=alice.headers)
        assert response.status_code == 400, bad
        assert response.json()["type"] == "urn:wingman:problem:invalid-cursor"
    for limit in [0, 101]:
        response = await client.get(SESSIONS, params={"limit": limit}, headers=alice.headers)
        assert response.status_code == 400
    default = (await client.get(SESSIONS, headers=alice.headers)).json()
    assert len(default["items"]) == 3
