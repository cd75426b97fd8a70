"""Hostile input against a real ``wingmanctl serve`` process: never a 500, always a problem.

Bodies nested 100,000 levels deep, text that is not UTF-8, NUL characters and oversized headers
are each answered with a 4xx problem and logged as one request line, without a traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.support.accounts import Caller, create_caller
from tests.support.web import WebServer, running_server
from wingman.config import Settings
from wingman.server.database import create_engine
from wingman.server.request_body import MAX_DEPTH

pytestmark = pytest.mark.e2e

OTP_REQUEST = "/api/v1/auth/otp/request"
PROBLEM = "application/problem+json"
DEPTH = 100_000


def client_for(server: WebServer, **kwargs: Any) -> httpx.AsyncClient:
    # An address of this module's own: anonymous requests count against the allowance of their
    # IP, which other tests' requests from 127.0.0.1 share.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.4.1")
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    with running_server(settings, tmp_path_factory.mktemp("hostile")) as web:
        yield web


@pytest.fixture(scope="module")
async def caller(settings: Settings) -> AsyncIterator[Caller]:
    engine = create_engine(settings.database, "wingman-tests")
    try:
        yield await create_caller(engine, settings)
    finally:
        await engine.dispose()


def refused_once(server: WebServer, response: httpx.Response, status: int, slug: str) -> None:
    """``response`` is a ``status`` problem of type ``slug``, logged as exactly one request line
    and nothing carrying a traceback."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == f"urn:wingman:problem:{slug}"
    lines = server.lines_of(response.headers["x-request-id"])
    requests = [line for line in lines if line["event"] == "request"]
    assert [line["status"] for line in requests] == [status]
    assert not [line for line in lines if "exception" in line], lines


async def post_raw(client: httpx.AsyncClient, path: str, body: bytes, **headers: str) -> Any:
    return await client.post(
        path, content=body, headers={"content-type": "application/json", **headers}
    )


async def test_a_body_nested_100k_levels_deep_is_a_400(server: WebServer, caller: Caller) -> None:
    arrays = b"[" * DEPTH + b"]" * DEPTH
    objects = b'{"a":' * DEPTH + b"1" + b"}" * DEPTH
    in_a_field = b'{"channel":"email","destination":' + arrays + b"}"
    async with client_for(server) as client:
        for body in (arrays, objects, in_a_field):
            response = await post_raw(client, OTP_REQUEST, body)
            refused_once(server, response, 400, "bad-request")
            assert "nested too deeply" in response.json()["detail"]
        signed_in = await client.patch("/api/v1/me", content=objects, headers=caller.headers)
        refused_once(server, signed_in, 400, "bad-request")
        # Shallow enough to decode, too deep to store: refused before it reaches the database.
        for depth in (MAX_DEPTH, 940):
            body = b'{"name":"deep","attributes":{"a":' + b"[" * depth + b"]" * depth + b"}}"
            deep = await post_raw(client, "/api/v1/profiles", body, **caller.headers)
            refused_once(server, deep, 400, "bad-request")
        fine = b'{"name":"fine","attributes":{"a":' + b"[" * 10 + b"]" * 10 + b"}}"
        stored = await post_raw(client, "/api/v1/profiles", fine, **caller.headers)
        assert stored.status_code == 201, stored.text


async def test_a_body_that_is_not_utf8_is_a_400(server: WebServer) -> None:
    async with client_for(server) as client:
        for body in (
            b'{"channel":"email","destination":"sam\xff@example.org"}',
            b'{"channel":"em\xc3","destination":"sam@example.org"}',  # a cut multibyte sequence
            b'{"channel":"email","destination":"\xed\xa0\x80@example.org"}',  # a surrogate
        ):
            response = await post_raw(client, OTP_REQUEST, body)
            refused_once(server, response, 400, "bad-request")
            assert "UTF-8" in response.json()["detail"]


async def test_a_nul_character_is_unstorable_on_every_route(
    server: WebServer, caller: Caller
) -> None:
    # The same 422 whether the row is written through a repository (PATCH /me) or directly.
    async with client_for(server, headers=caller.headers) as client:
        for method, path, body in (
            ("PATCH", "/api/v1/me", {"display_name": "nul\u0000here"}),
            ("POST", "/api/v1/profiles", {"name": "nul\u0000here"}),
            ("POST", "/api/v1/sessions", {"title": "nul\u0000here"}),
        ):
            response = await client.request(method, path, json=body)
            assert response.status_code == 422, (path, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["type"] == "urn:wingman:problem:unstorable-value"
        me = await client.get("/api/v1/me")
        assert me.json()["display_name"] is None


async def test_oversized_headers_are_a_431(server: WebServer) -> None:
    async with client_for(server) as client:
        # Up to the caps: answered as usual.
        fine = await client.get(
            "/health/live", headers={f"x-pad-{i}": "a" * 3000 for i in range(4)}
        )
        assert fine.status_code == 200
        # One line over 8 KiB, or 16 KiB in total: the app's 431 problem.
        line = await client.get("/health/live", headers={"x-pad": "a" * 9000})
        refused_once(server, line, 431, "request-header-fields-too-large")
        total = await client.get("/api/v1/me", headers={f"x-pad-{i}": "a" * 6000 for i in range(3)})
        refused_once(server, total, 431, "request-header-fields-too-large")
        # Far beyond: Granian refuses the head before the app sees it (a bare 431), or the app
        # does; either way the server goes on serving.
        huge = await client.get("/health/live", headers={"x-pad": "a" * 100_000})
        assert huge.status_code == 431
    async with client_for(server) as client:
        assert (await client.get("/health/live")).status_code == 200


async def test_an_answer_before_the_body_is_read_closes_the_connection(
    server: WebServer, caller: Caller
) -> None:
    """A refusal sent while most of a large body is still on the wire says ``Connection: close``,
    so a keep-alive client opens a new connection instead of losing its next request (without
    it, about 4 in 10 of these requests failed with "server disconnected")."""
    body = b'{"title":"' + b"x" * 200_000 + b'"}'
    transport = httpx.AsyncHTTPTransport(local_address="127.0.4.2")
    async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=30) as client:
        for _ in range(30):
            # No token: refused 401 before the body is read.
            refused = await post_raw(client, "/api/v1/sessions", body)
            assert refused.status_code == 401, refused.text[:300]
            assert refused.headers["connection"] == "close"
        # A body read to its end keeps the connection for the next request.
        read = await post_raw(client, "/api/v1/sessions", b"[", **caller.headers)
        assert read.status_code == 400
        assert "connection" not in read.headers
