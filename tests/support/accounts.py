"""Users for tests that need a caller but not the sign-in flow itself.

The account row is inserted directly and its access token is issued exactly as sign-in issues
it, so requests go through the real JWT middleware and status check. The accounts tests cover
the one-time-code flow; everything else signs in this way to stay fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from wingman.config import Settings
from wingman.db.models import User, UserRole, UserTier
from wingman.server.auth import issue_access_token


@dataclass(frozen=True)
class Caller:
    """A signed-in user: their id and the headers that authenticate as them."""

    id: UUID
    headers: dict[str, str]


async def create_caller(
    engine: AsyncEngine,
    settings: Settings,
    *,
    tier: UserTier = UserTier.FREE,
    role: UserRole = UserRole.USER,
) -> Caller:
    """A new active account with a valid access token."""
    user_id = UUID(str(uuid7()))
    async with engine.begin() as connection:
        await connection.execute(
            insert(User).values(
                id=user_id, email=f"caller-{time.time_ns()}@example.org", tier=tier, role=role
            )
        )
    token = issue_access_token(settings, user_id, tier, role)
    return Caller(user_id, {"Authorization": f"Bearer {token}"})
