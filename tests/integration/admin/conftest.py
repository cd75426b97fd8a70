"""Admin fixtures: a plain user signed in without the code flow (the admin is shared)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from tests.support.accounts import Caller, create_caller
from wingman.config import Settings
from wingman.db.models import User, UserStatus


@pytest.fixture
async def member(engine: AsyncEngine, settings: Settings) -> Caller:
    return await create_caller(engine, settings)


async def add_user(
    engine: AsyncEngine,
    *,
    email: str | None = None,
    phone: str | None = None,
    age: int = 0,
    status: UserStatus = UserStatus.ACTIVE,
) -> UUID:
    """An account row with this email or phone, created ``age`` seconds ago."""
    user_id = UUID(str(uuid7()))
    async with engine.begin() as connection:
        await connection.execute(
            insert(User).values(
                id=user_id,
                email=email,
                phone=phone,
                status=status,
                created_at=datetime.now(UTC) - timedelta(seconds=age),
            )
        )
    return user_id
