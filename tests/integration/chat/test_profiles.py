"""Target profiles: CRUD, validation and paging of the caller's own profiles."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.accounts import Caller

PROFILES = "/api/v1/profiles"


async def test_profile_crud(client: AsyncTestClient[Litestar], alice: Caller) -> None:
    body = {
        "name": "Sam",
        "notes": "Met at the climbing gym.",
        "interests": ["bouldering", "jazz"],
        "attributes": {"age": 29, "city": "Lyon"},
    }
    created = await client.post(PROFILES, json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    profile = created.json()
    assert {k: profile[k] for k in body} == body

    url = f"{PROFILES}/{profile['id']}"
    assert (await client.get(url, headers=alice.headers)).json() == profile

    patched = await client.patch(
        url, json={"notes": None, "interests": ["jazz"]}, headers=alice.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["notes"] is None
    assert patched.json()["interests"] == ["jazz"]
    assert patched.json()["name"] == "Sam"
    assert patched.json()["updated_at"] > profile["updated_at"]

    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    gone = await client.get(url, headers=alice.headers)
    assert gone.status_code == 404
    assert gone.json()["type"] == "urn:wingman:problem:profile-not-found"


async def test_profile_validation_names_the_field(
    client: AsyncTestClient[Litestar], alice: Caller
) -> None:
    for body, field in [
        ({"name": ""}, "name"),
        ({"name": "x", "interests": ["a" * 65]}, "interests"),
        ({"name": "x", "attributes": []}, "attributes"),
        ({"name": "x", "surprise": 1}, "surprise"),
    ]:
        response = await client.post(PROFILES, json=body, headers=alice.headers)
        assert response.status_code == 400, (body, response.text)
        problem = response.json()
        assert problem["type"] == "urn:wingman:problem:validation-failed"
        assert field in response.text


async def test_profiles_page_by_recent_edit(
    client: AsyncTestClient[Litestar], alice: Caller, bob: Caller
) -> None:
    ids = []
    for n in range(5):
        response = await client.post(PROFILES, json={"name": f"p{n}"}, headers=alice.headers)
        ids.append(response.json()["id"])
    await client.post(PROFILES, json={"name": "bob's"}, headers=bob.headers)
    # Editing the oldest moves it to the front.
    await client.patch(f"{PROFILES}/{ids[0]}", json={"name": "p0!"}, headers=alice.headers)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(PROFILES, params=params, headers=alice.headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [ids[0], ids[4], ids[3], ids[2], ids[1]]

    bad = await client.get(PROFILES, params={"cursor": "nope"}, headers=alice.headers)
    assert bad.status_code == 400
    assert bad.json()["type"] == "urn:wingman:problem:invalid-cursor"


async def test_unstorable_text_is_refused_not_a_server_error(
    client: AsyncTestClient[Litestar], alice: Caller
) -> None:
    # PostgreSQL stores no NUL character in text or in a JSON string; found by the API fuzz test.
    for body in (
        {"name": "a\u0000b"},
        {"name": "ok", "attributes": {"note": "a\u0000b"}},
    ):
        response = await client.post(PROFILES, json=body, headers=alice.headers)
        assert response.status_code == 422, response.text
        assert response.json()["type"] == "urn:wingman:problem:unstorable-value"
    listed = await client.get(PROFILES, headers=alice.headers)
    assert all("\u0000" not in item["name"] for item in listed.json()["items"])
