"""WebSocket authentication: subprotocol, first frame, refresh, and every refusal's close code."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from uuid import UUID

import jwt
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.realtime.conftest import (
    close_code,
    open_socket,
    receive,
    send,
    token_of,
)
from tests.support.accounts import Caller
from wingman.config import Settings
from wingman.db.models import User, UserStatus
from wingman.domain.realtime.account_changes import announce_account_change
from wingman.domain.realtime.protocol import CloseCode
from wingman.server.auth import ALGORITHM


def short_token(settings: Settings, user_id: UUID, seconds: float, key: str | None = None) -> str:
    """A token shaped like sign-in's, expiring in ``seconds`` (negative: already expired)."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "exp": now + timedelta(seconds=seconds),
        "iat": now - timedelta(seconds=10),
        "iss": settings.auth.issuer,
        "tier": "free",
        "role": "user",
    }
    return jwt.encode(claims, key or settings.security.jwt_key, algorithm=ALGORITHM)


async def test_subprotocol_token_is_accepted_and_bearer_selected(
    ws_url: str, caller: Caller
) -> None:
    async with open_socket(ws_url, token_of(caller)) as ws:
        assert ws.subprotocol == "bearer"
        hello = await receive(ws)
        assert hello["type"] == "hello"
        assert hello["data"]["pid"] == os.getpid()
        assert hello["data"]["event_id"] == 0
        assert "event_id" not in hello


async def test_auth_frame_is_accepted_and_may_carry_the_resume_point(
    ws_url: str, caller: Caller, bus: object
) -> None:
    async with open_socket(ws_url) as ws:
        assert ws.subprotocol is None
        await send(ws, {"type": "auth", "token": token_of(caller), "last_event_id": 0})
        assert (await receive(ws))["type"] == "hello"
        resumed = await receive(ws)
        assert resumed == {"type": "resumed", "data": {"event_id": 0, "replayed": 0}}


async def test_badly_signed_token_closes_4001(
    ws_url: str, caller: Caller, ws_settings: Settings
) -> None:
    forged = short_token(ws_settings, caller.id, 600, key="x" * 48)
    async with open_socket(ws_url, forged) as ws:
        assert await close_code(ws) == CloseCode.UNAUTHORIZED
    async with open_socket(ws_url) as ws:
        await send(ws, {"type": "auth", "token": "not-a-jwt"})
        assert await close_code(ws) == CloseCode.UNAUTHORIZED


async def test_expired_token_closes_4004(
    ws_url: str, caller: Caller, ws_settings: Settings
) -> None:
    expired = short_token(ws_settings, caller.id, -5)
    async with open_socket(ws_url, expired) as ws:
        assert await close_code(ws) == CloseCode.TOKEN_EXPIRED


async def test_missing_token_times_out_4002_and_the_query_string_is_ignored(
    ws_url: str, caller: Caller
) -> None:
    async with open_socket(f"{ws_url}?token={token_of(caller)}") as ws:
        assert await close_code(ws) == CloseCode.AUTH_TIMEOUT


async def test_first_frame_other_than_auth_closes_4001(ws_url: str) -> None:
    async with open_socket(ws_url) as ws:
        await send(ws, {"type": "ping"})
        assert await close_code(ws) == CloseCode.UNAUTHORIZED


async def test_disabled_account_closes_4003(
    ws_url: str, caller: Caller, engine: AsyncEngine
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(User).where(User.id == caller.id).values(status=UserStatus.DISABLED)
        )
    async with open_socket(ws_url, token_of(caller)) as ws:
        assert await close_code(ws) == CloseCode.ACCOUNT_DISABLED


async def test_fresh_token_in_auth_frame_outlives_the_first(
    ws_url: str, caller: Caller, ws_settings: Settings
) -> None:
    refreshed = open_socket(ws_url, short_token(ws_settings, caller.id, 2))
    lapsing = open_socket(ws_url, short_token(ws_settings, caller.id, 2))
    async with refreshed as kept, lapsing as dropped:
        for ws in (kept, dropped):
            assert (await receive(ws))["type"] == "hello"
        await send(kept, {"type": "auth", "token": token_of(caller)})
        assert (await receive(kept))["type"] == "authenticated"
        assert await close_code(dropped) == CloseCode.TOKEN_EXPIRED
        # Past the first token's expiry the refreshed socket still answers: the sleep is the
        # period in which nothing may close it.
        await asyncio.sleep(0.5)
        await send(kept, {"type": "ping"})
        frame = await receive(kept)
        while frame["type"] == "ping":  # a server heartbeat may come first
            frame = await receive(kept)
        assert frame["type"] == "pong"


async def test_auth_frame_for_another_user_closes_4001(
    ws_url: str, caller: Caller, ws_settings: Settings
) -> None:
    async with open_socket(ws_url, token_of(caller)) as ws:
        assert (await receive(ws))["type"] == "hello"
        stranger = short_token(ws_settings, UUID(int=7), 600)
        await send(ws, {"type": "auth", "token": stranger})
        assert await close_code(ws) == CloseCode.UNAUTHORIZED


async def test_an_announced_disable_closes_open_sockets_and_refuses_new_ones(
    ws_url: str, caller: Caller, redis_queue: Redis
) -> None:
    """The announcement alone decides here (the row stays active): a socket that passed its
    status check just before the change is refused all the same."""
    async with open_socket(ws_url, token_of(caller)) as ws:
        assert (await receive(ws))["type"] == "hello"
        await announce_account_change(
            redis_queue, caller.id, status="disabled", tier="free", role="user"
        )
        assert await close_code(ws) == CloseCode.ACCOUNT_DISABLED
    try:
        async with open_socket(ws_url, token_of(caller)) as ws:
            assert await close_code(ws) == CloseCode.ACCOUNT_DISABLED
    finally:
        # Enabled again: the process stops refusing the account.
        await announce_account_change(
            redis_queue, caller.id, status="active", tier="premium", role="user"
        )
    async with open_socket(ws_url, token_of(caller)) as ws:
        assert (await receive(ws))["type"] == "hello"
        await send(ws, {"type": "resume", "last_event_id": None})
        assert (await receive(ws))["type"] == "resumed"
        await announce_account_change(
            redis_queue, caller.id, status="active", tier="premium", role="admin"
        )
        assert await receive(ws) == {
            "type": "account_updated",
            "data": {"tier": "premium", "role": "admin"},
        }
