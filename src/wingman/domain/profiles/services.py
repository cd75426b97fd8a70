"""Target profiles, always scoped by their owner: another user's id is simply not found."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.db.models import TargetProfile
from wingman.domain.chat.pagination import InvalidCursor, Position, decode_cursor, encode_cursor
from wingman.server.errors import Problem

CURSOR_KIND = "profiles"


def profile_not_found() -> Problem:
    return Problem(404, "profile-not-found", "No such profile.")


def invalid_cursor() -> Problem:
    return Problem(400, "invalid-cursor", "The cursor is malformed or was not issued here.")


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
        if cursor is not None:
            try:
                after = decode_cursor(self.cursor_key, CURSOR_KIND, cursor)
            except InvalidCursor:
                raise invalid_cursor() from None
            query = query.where(
                or_(
                    TargetProfile.updated_at < after.at,
                    and_(TargetProfile.updated_at == after.at, TargetProfile.id > after.id),
                )
            )
        rows = list(
            await self.session.scalars(
                query.order_by(TargetProfile.updated_at.desc(), TargetProfile.id).limit(limit + 1)
            )
        )
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        next_cursor = encode_cursor(
            self.cursor_key, CURSOR_KIND, Position(last.updated_at, last.id)
        )
        return rows[:limit], next_cursor

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
