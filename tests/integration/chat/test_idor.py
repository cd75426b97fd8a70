"""Another user's profile, session, message, event target or export: 404 on every route and
verb."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.integration.chat.conftest import new_session, post_message
from tests.support.accounts import Caller


async def test_two_user_matrix(
    client: AsyncTestClient[Litestar], alice: Caller, bob: Caller
) -> None:
    profile = (
        await client.post(
            "/api/v1/profiles", json={"name": "Alice's", "notes": "secret"}, headers=alice.headers
        )
    ).json()
    chat = await new_session(client, alice, title="private", profile_id=profile["id"])
    pair = await post_message(client, alice, chat["id"], content="secret text", idempotency_key="k")
    p, s, m = profile["id"], chat["id"], pair["user_message"]["id"]
    export = await client.post("/api/v1/me/export", headers=alice.headers)
    assert export.status_code == 202, export.text
    e = export.json()["id"]
    bobs_chat = await new_session(client, bob)

    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/api/v1/profiles/{p}", None),
        ("PATCH", f"/api/v1/profiles/{p}", {"name": "taken"}),
        ("DELETE", f"/api/v1/profiles/{p}", None),
        ("GET", f"/api/v1/sessions/{s}", None),
        ("PATCH", f"/api/v1/sessions/{s}", {"title": "taken"}),
        ("DELETE", f"/api/v1/sessions/{s}", None),
        ("GET", f"/api/v1/sessions/{s}/messages", None),
        ("POST", f"/api/v1/sessions/{s}/messages", {"content": "x"}),
        # Replaying Alice's idempotency key must not hand her pair to Bob.
        ("POST", f"/api/v1/sessions/{s}/messages", {"content": "x", "idempotency_key": "k"}),
        ("POST", f"/api/v1/sessions/{s}/events", {"type": "liked"}),
        ("POST", f"/api/v1/sessions/{s}/events", {"type": "liked", "message_id": m}),
        # Bob's own session pointing at Alice's rows.
        ("POST", "/api/v1/sessions", {"profile_id": p}),
        ("PATCH", f"/api/v1/sessions/{bobs_chat['id']}", {"profile_id": p}),
        ("POST", f"/api/v1/sessions/{bobs_chat['id']}/events", {"type": "sent", "message_id": m}),
        # A transcript into Alice's session (refused before any byte is stored).
        ("POST", f"/api/v1/sessions/{s}/imports?format=text&me=Bob", None),
        # Alice's account export.
        ("GET", f"/api/v1/me/exports/{e}", None),
        ("GET", f"/api/v1/me/exports/{e}/download", None),
    ]
    for method, url, body in requests:
        response = await client.request(method, url, json=body, headers=bob.headers)
        assert response.status_code == 404, (method, url, response.text)
        assert "secret" not in response.text
        assert "private" not in response.text

    for url in ["/api/v1/profiles", "/api/v1/sessions"]:
        listed = (await client.get(url, headers=bob.headers)).json()
        assert p not in str(listed)
        assert s not in str(listed)

    # Alice's rows are untouched by all of the above.
    detail = (await client.get(f"/api/v1/sessions/{s}", headers=alice.headers)).json()
    assert detail["session"]["title"] == "private"
    assert detail["session"]["message_count"] == 2
    assert detail["profile"]["name"] == "Alice's"
    # And she still reaches everything herself.
    for method, url, body in requests[:11]:
        if method == "DELETE":
            continue
        response = await client.request(method, url, json=body, headers=alice.headers)
        assert response.status_code < 300, (method, url, response.text)
    for method, url in [("DELETE", f"/api/v1/sessions/{s}"), ("DELETE", f"/api/v1/profiles/{p}")]:
        assert (await client.request(method, url, headers=alice.headers)).status_code == 204


async def test_anonymous_is_refused(client: AsyncTestClient[Litestar]) -> None:
    for url in ["/api/v1/profiles", "/api/v1/sessions"]:
        assert (await client.get(url)).status_code == 401
