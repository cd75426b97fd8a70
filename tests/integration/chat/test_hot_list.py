"""The cached first page of sessions answered before routing (domain/chat/hot_list.py), on real
PostgreSQL and Redis: the same answer as the route's, each request counted once, and everything
but a cache hit left to Litestar."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.accounts import Caller, create_caller
from tests.support.ratelimits import clear_rate_limit_counts, set_rate_limits
from wingman.config import Settings
from wingman.db.models import User, UserStatus
from wingman.domain.chat.hot_list import CachedSessionList
from wingman.server.app_resources import app_resources

LIST = "/api/v1/sessions"
# The route's own URL for the same page: the query string keeps the layer out of it.
ROUTED = f"{LIST}?limit=20"
# Headers whose values may differ between two answers of the same content.
VOLATILE = {"date", "x-request-id", "ratelimit-remaining", "ratelimit-reset"}


async def start_sessions(client: AsyncTestClient[Litestar], caller: Caller, n: int) -> None:
    for i in range(n):
        made = await client.post(LIST, json={"title": f"Chat {i}"}, headers=caller.headers)
        assert made.status_code == 201, made.text


def stable(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in VOLATILE}


class Routed:
    """Wraps what lies behind the layer: counts the requests that reach routing."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


def count_routed(app: Litestar) -> Routed:
    """Put a :class:`Routed` between the app's layer and Litestar's routing."""
    handler: Any = app.asgi_handler
    while not isinstance(handler, CachedSessionList):
        handler = handler.app
    handler.app = routed = Routed(handler.app)
    return routed


@pytest.mark.usefixtures("fresh_limits")
@pytest.mark.parametrize("accept", ["identity", "gzip", "br, gzip"])
async def test_a_hit_is_the_routes_answer_counted_once(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, settings: Settings, accept: str
) -> None:
    caller = await create_caller(engine, settings)
    await start_sessions(client, caller, 8)  # over 1 KB of JSON: compressed where asked
    headers = {**caller.headers, "Accept-Encoding": accept}
    answers = [await client.get(url, headers=headers) for url in (LIST, LIST, ROUTED, LIST)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    miss, hit, routed, hit_again = answers
    # The client decodes what the content-encoding names (so a wrong name fails here).
    assert len(hit.json()["items"]) == 8
    assert hit.content == miss.content == routed.content == hit_again.content
    assert stable(hit.headers) == stable(routed.headers) == stable(miss.headers)
    assert hit.headers.get("content-encoding") == {"identity": None, "gzip": "gzip"}.get(
        accept, "br"
    )
    # Every request counted exactly once, whichever path answered it (the miss fell through).
    remaining = [int(a.headers["RateLimit-Remaining"]) for a in answers]
    assert remaining == [remaining[0] - n for n in range(4)]


async def test_a_write_is_seen_by_the_next_list(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, settings: Settings
) -> None:
    caller = await create_caller(engine, settings)
    await start_sessions(client, caller, 1)
    assert len((await client.get(LIST, headers=caller.headers)).json()["items"]) == 1
    assert len((await client.get(LIST, headers=caller.headers)).json()["items"]) == 1
    await start_sessions(client, caller, 1)
    assert len((await client.get(LIST, headers=caller.headers)).json()["items"]) == 2


async def test_only_a_cache_hit_of_an_active_caller_skips_routing(
    client: AsyncTestClient[Litestar], app: Litestar, engine: AsyncEngine, settings: Settings
) -> None:
    caller = await create_caller(engine, settings)
    await start_sessions(client, caller, 2)
    routed = count_routed(app)
    auth = caller.headers["Authorization"]

    async def status(url: str = LIST, **headers: str) -> int:
        return (await client.get(url, headers=headers)).status_code

    assert await status(authorization=auth) == 200  # a miss: routed, and stored
    assert routed.calls == 1
    assert await status(authorization=auth) == 200  # a hit: answered before routing
    assert routed.calls == 1
    left_to_litestar = [
        ({}, 401),  # no token
        ({"authorization": "Bearer not-a-token"}, 401),
        ({"authorization": auth[:-2] + "xx"}, 401),  # a changed signature
        ({"authorization": auth, "origin": "https://app.example"}, 200),  # CORS is Litestar's
    ]
    for headers, wanted in left_to_litestar:
        assert await status(**headers) == wanted
    assert await status(ROUTED, authorization=auth) == 200
    assert routed.calls == 1 + len(left_to_litestar) + 1

    async with engine.begin() as connection:
        await connection.execute(
            update(User).where(User.id == caller.id).values(status=UserStatus.DISABLED)
        )
    app_resources(app).user_status.forget(caller.id)
    answer = await client.get(LIST, headers=caller.headers)
    assert answer.status_code == 401
    assert answer.json()["type"].endswith("account-disabled")
    assert routed.calls == 1 + len(left_to_litestar) + 2


@pytest.mark.usefixtures("fresh_limits")
async def test_a_refusal_is_the_middlewares_429_after_exactly_the_allowance(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, settings: Settings
) -> None:
    caller = await create_caller(engine, settings)
    await start_sessions(client, caller, 1)
    await set_rate_limits(settings, {"user": {"limit": 6, "period": "minute"}})
    for _ in range(100):  # the process drops its config cache once the change is announced
        seen = await client.get(LIST, headers=caller.headers)
        if seen.headers.get("RateLimit-Limit") == "6":
            break
    await clear_rate_limit_counts(settings)
    statuses = [(await client.get(LIST, headers=caller.headers)).status_code for _ in range(8)]
    assert statuses == [200] * 6 + [429] * 2
    refused = await client.get(LIST, headers=caller.headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
