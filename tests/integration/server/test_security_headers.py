"""Security headers on every class of answer, and the API docs page served from the app alone."""

from __future__ import annotations

import hashlib
import re

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.accounts import Caller
from wingman.server.api_docs import ASSET_DIR, ASSET_TYPES, IMMUTABLE, load_assets
from wingman.server.security_headers import API_POLICY, PAGE_POLICY

EVERYWHERE = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def assert_secured(response: httpx.Response, policy: str, cache_control: str | None) -> None:
    """Each header once, with its value; HSTS left to the front proxy."""
    for name, value in {**EVERYWHERE, "content-security-policy": policy}.items():
        assert response.headers.get_list(name) == [value], (response.url, name)
    assert response.headers.get_list("cache-control") == ([cache_control] if cache_control else [])
    assert "strict-transport-security" not in response.headers


async def test_public_authenticated_error_and_metrics_answers(
    client: AsyncTestClient[Litestar], alice: Caller, admin: Caller
) -> None:
    # Public: no credentials, nothing private, so caching is left alone.
    for path in ("/health/live", "/health/ready"):
        response = await client.get(path)
        assert response.status_code == 200
        assert_secured(response, API_POLICY, None)

    me = await client.get("/api/v1/me", headers=alice.headers)
    assert me.status_code == 200
    assert_secured(me, API_POLICY, "no-store")
    # The second read of the session list is answered from the cache, before routing.
    for _ in range(2):
        sessions = await client.get("/api/v1/sessions", headers=alice.headers)
        assert sessions.status_code == 200
        assert_secured(sessions, API_POLICY, "no-store")
    invalid = await client.patch("/api/v1/me", json={"locale": "not a tag"}, headers=alice.headers)
    assert invalid.status_code == 400
    assert invalid.headers["content-type"].startswith("application/problem+json")
    assert_secured(invalid, API_POLICY, "no-store")
    missing = await client.get(
        "/api/v1/sessions/0190a0b4-0000-7000-8000-000000000000", headers=alice.headers
    )
    assert missing.status_code == 404
    assert_secured(missing, API_POLICY, "no-store")

    unmatched = await client.get("/no/such/route")
    assert unmatched.status_code == 404
    assert_secured(unmatched, API_POLICY, None)
    anonymous = await client.get("/api/v1/me")
    assert anonymous.status_code == 401
    assert_secured(anonymous, API_POLICY, None)
    # Sign-in routes answer with tokens: never stored, though the request carries none.
    refused = await client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 40})
    assert refused.status_code == 401
    assert_secured(refused, API_POLICY, "no-store")

    metrics = await client.get("/metrics", headers=admin.headers)
    assert metrics.status_code == 200
    assert_secured(metrics, API_POLICY, "no-store")


async def test_docs_page_loads_only_its_own_assets(
    client: AsyncTestClient[Litestar], alice: Caller
) -> None:
    page = await client.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert_secured(page, PAGE_POLICY, None)
    html = page.text
    assert not re.search(r"https?:|//", html.replace("<!DOCTYPE html>", "")), html
    assert "<script>" not in html  # nothing inline: the policy would block it
    links = re.findall(r'(?:src|href|data-openapi-url)="([^"]*)"', html)
    digest, _ = load_assets()
    assets = {f"/api/docs/assets/{digest}/{name}" for name in ASSET_TYPES}
    assert set(links) == assets | {"data:,", "/api/docs/openapi.json"}

    checksums = readme_checksums()
    for link in sorted(assets):
        name = link.rsplit("/", 1)[1]
        for accept, encoding in (("gzip, deflate, br", "gzip"), ("identity", None)):
            # With credentials too: the asset's own Cache-Control wins over no-store.
            headers = {**alice.headers, "Accept-Encoding": accept}
            response = await client.get(link, headers=headers)
            assert response.status_code == 200, link
            assert response.headers["content-type"] == f"{ASSET_TYPES[name]}; charset=utf-8"
            assert response.headers.get("content-encoding") == encoding
            assert_secured(response, API_POLICY, IMMUTABLE)
            body = response.content  # decoded
            assert body == (ASSET_DIR / name).read_bytes()
            if name in checksums:  # vendored, not Wingman's own init.js
                assert hashlib.sha256(body).hexdigest() == checksums[name]
    assert set(checksums) >= {"swagger-ui-bundle.js", "swagger-ui.css"}

    # Another version's address, or a file the page does not load: a problem, not a file.
    for path in (f"/api/docs/assets/{'0' * 16}/init.js", f"/api/docs/assets/{digest}/LICENSE"):
        gone = await client.get(path)
        assert gone.status_code == 404
        assert gone.headers["content-type"].startswith("application/problem+json")
        assert_secured(gone, API_POLICY, None)
    # The docs router's own 404 page is HTML: it gets the page's policy.
    page_404 = await client.get("/api/docs/nothing-here")
    assert page_404.status_code == 404
    assert page_404.headers["content-type"].startswith("text/html")
    assert_secured(page_404, PAGE_POLICY, None)


def readme_checksums() -> dict[str, str]:
    """The vendored files' SHA-256 as the folder's README states them, checked against the files."""
    readme = (ASSET_DIR / "README.md").read_text()
    stated = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", readme, re.MULTILINE))
    for name, checksum in stated.items():
        assert hashlib.sha256((ASSET_DIR / name).read_bytes()).hexdigest() == checksum, name
    return stated
