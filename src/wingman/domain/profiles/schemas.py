"""Request and response bodies of the target-profiles API (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from wingman.db.models import TargetProfile
from wingman.server.schema import Schema

ProfileName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
ProfileNotes = Annotated[str, msgspec.Meta(max_length=10_000)]
Interest = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# Bounded so one profile cannot grow the prompt (and the row) without limit.
Interests = Annotated[list[Interest], msgspec.Meta(max_length=50)]
Attributes = Annotated[dict[str, Any], msgspec.Meta(max_length=50)]


class ProfileIn(Schema):
    name: ProfileName
    notes: ProfileNotes | None = None
    interests: Interests = msgspec.field(default_factory=list)
    attributes: Attributes = msgspec.field(default_factory=dict)


class ProfilePatch(Schema):
    """Fields left out are unchanged; ``null`` clears ``notes``."""

    name: ProfileName | msgspec.UnsetType = msgspec.UNSET
    notes: ProfileNotes | msgspec.UnsetType | None = msgspec.UNSET
    interests: Interests | msgspec.UnsetType = msgspec.UNSET
    attributes: Attributes | msgspec.UnsetType = msgspec.UNSET


class ProfileOut(Schema):
    id: UUID
    name: str
    notes: str | None
    interests: list[str]
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ProfilePage(Schema):
    items: list[ProfileOut]
    # Pass as ``cursor`` for the next page; null on the last page.
    next_cursor: str | None


def profile_out(profile: TargetProfile) -> ProfileOut:
    return ProfileOut(
        id=profile.id,
        name=profile.name,
        notes=profile.notes,
        interests=list(profile.interests),
        attributes=dict(profile.attributes),
        created_at=profile.created_at,
        updated_at=profile.updated_at,
    )
