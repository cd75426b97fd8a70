"""Request and response bodies of the admin user API (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec

from wingman.db.models import User, UserRole, UserStatus, UserTier
from wingman.server.schema import Schema


class AdminUserOut(Schema):
    id: UUID
    email: str | None
    phone: str | None
    display_name: str | None
    tier: UserTier
    role: UserRole
    status: UserStatus
    created_at: datetime
    last_seen_at: datetime | None
    # Set while a deleted account waits for its purge (restorable until purge_after).
    deleted_at: datetime | None = None
    purge_after: datetime | None = None


class AdminUserPage(Schema):
    items: list[AdminUserOut]
    # Pass as ``cursor`` for the next page; null on the last page.
    next_cursor: str | None


class AdminUserPatch(Schema):
    """Fields left out are unchanged. ``deleted`` is not settable here: deletion is its own flow."""

    tier: UserTier | msgspec.UnsetType = msgspec.UNSET
    role: UserRole | msgspec.UnsetType = msgspec.UNSET
    status: Literal["active", "disabled"] | msgspec.UnsetType = msgspec.UNSET


def admin_user_out(user: User) -> AdminUserOut:
    return AdminUserOut(
        id=user.id,
        email=user.email,
        phone=user.phone,
        display_name=user.display_name,
        tier=user.tier,
        role=user.role,
        status=user.status,
        created_at=user.created_at,
        last_seen_at=user.last_seen_at,
        deleted_at=user.deleted_at,
        purge_after=user.purge_after,
    )
