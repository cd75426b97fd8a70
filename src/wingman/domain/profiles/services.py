"""Target profiles, always scoped by their owner: another user's id is simply not found."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.db.models import TargetProfile
from wingman.server.errors import Problem
from wingman.server.keyset import newest_first

CURSOR_KIND = "profiles"


def profile_not_found() -> Problem:
    return Problem(404, "profile-not-found", "No such profile.")


class ProfileService:
    def __init__(self, session: AsyncSession, user_id: UUID, cursor_key: bytes) -> None:
        self.session = session
        self.user_id = user_id
        self.cursor_key = cursor_key

    async def get(self, profile_id: UUID) -> TargetProfile:
        profile = await self.session.scalar(
            select(TargetProfile).where(
                TargetProfile.id == profile_id, TargetProfile.user_id == self.user_id
            )
        )
        if profile is None:
            raise profile_not_found()
        return profile

    async def list_page(
        self, cursor: str | None, limit: int
    ) -> tuple[list[TargetProfile], str | None]:
        """One page, most recently edited first, ordered by (updated_at desc, id)."""
        query = select(TargetProfile).where(TargetProfile.user_id == self.user_id)
        return await newest_first(
            self.session,
            query,
            TargetProfile.updated_at,
            TargetProfile.id,
            key=self.cursor_key,
            kind=CURSOR_KIND,
            cursor=cursor,
            limit=limit,
        )

    async def create(self, values: dict[str, Any]) -> TargetProfile:
        profile = TargetProfile(user_id=self.user_id, **values)
        self.session.add(profile)
        await self.session.flush()
        return profile

    async def update(self, profile_id: UUID, changes: dict[str, Any]) -> TargetProfile:
        profile = await self.get(profile_id)
        for name, value in changes.items():
            setattr(profile, name, value)
        await self.session.flush()
        return profile

    async def delete(self, profile_id: UUID) -> None:
        """Delete the profile; its sessions keep going without one (the FK sets NULL)."""
        await self.session.delete(await self.get(profile_id))
        await self.session.flush()
