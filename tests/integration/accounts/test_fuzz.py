"""Whatever a client sends to the public auth endpoints, the answer is never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.ratelimits import roomy_rate_limits
from wingman.app import create_app
from wingman.config import Settings

FUZZ = hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

destinations = st.one_of(
    st.text(max_size=40),
    st.emails().map(lambda e: e.swapcase()),
    st.from_regex(r"\+?[0-9 ()\-]{0,20}", fullmatch=True),
    st.text(alphabet="+0123456789", min_size=1, max_size=20),
    st.text(min_size=300, max_size=400),
)
junk = st.one_of(
    st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)
)


@pytest.fixture
async def lenient_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    # A high allowance so that examples explore validation rather than the throttle.
    async with roomy_rate_limits(settings), AsyncTestClient(app=create_app(settings)) as client:
        yield client


@FUZZ
@given(channel=st.sampled_from(["email", "sms", "fax", ""]), destination=destinations)
async def test_request_never_fails_on_our_side(
    lenient_client: AsyncTestClient[Litestar], channel: str, destination: str
) -> None:
    response = await lenient_client.post(
        "/api/v1/auth/otp/request", json={"channel": channel, "destination": destination}
    )
    assert response.status_code in (202, 400, 429), response.text
    if response.status_code == 202:
        assert set(response.json()) == {"request_id", "expires_in"}


@FUZZ
@given(
    request_id=st.one_of(st.uuids().map(str), st.text(max_size=40)),
    code=st.one_of(st.from_regex(r"[0-9]{6}", fullmatch=True), st.text(max_size=40)),
)
async def test_verify_never_fails_on_our_side(
    lenient_client: AsyncTestClient[Litestar], request_id: str, code: str
) -> None:
    response = await lenient_client.post(
        "/api/v1/auth/otp/verify", json={"request_id": request_id, "code": code}
    )
    assert response.status_code in (400, 404), response.text


@FUZZ
@given(body=st.dictionaries(st.sampled_from(["refresh_token", "x"]), junk, max_size=2))
async def test_refresh_and_logout_never_fail_on_our_side(
    lenient_client: AsyncTestClient[Litestar], body: dict[str, Any]
) -> None:
    for path in ("/api/v1/auth/refresh", "/api/v1/auth/logout"):
        response = await lenient_client.post(path, json=body)
        assert response.status_code in (204, 400, 401), (path, response.text)
