"""The WebSocket's AsyncAPI document is served beside the OpenAPI one, as public and as secured."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.integration.server.test_security_headers import assert_secured
from tests.support.accounts import Caller
from wingman import __version__
from wingman.domain.realtime.asyncapi import asyncapi_document
from wingman.server.security_headers import API_POLICY


async def test_the_asyncapi_document_is_served_beside_the_openapi_one(
    client: AsyncTestClient[Litestar], alice: Caller
) -> None:
    # Public like the OpenAPI document: no credentials needed, so caching is left alone.
    first = await client.get("/api/docs/asyncapi.json")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert_secured(first, API_POLICY, None)
    assert first.json() == asyncapi_document(version=__version__)
    assert first.json()["channels"]["realtime"]["address"] == "/api/v1/ws"
    # Built once per process: the same bytes again, and no-store when credentials come along.
    again = await client.get("/api/docs/asyncapi.json", headers=alice.headers)
    assert again.status_code == 200
    assert again.content == first.content
    assert_secured(again, API_POLICY, "no-store")
    openapi = await client.get("/api/docs/openapi.json")
    assert openapi.status_code == 200
    assert "/api/docs/asyncapi.json" not in openapi.json()["paths"]
