"""Request and response bodies of the catalog API (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from wingman.server.schema import Schema

Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
# PostgreSQL text cannot hold NUL: refuse it here (422) instead of failing the insert.
NO_NUL = r"^[^\x00]*$"
ToneName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_NUL)]
Description = Annotated[str, msgspec.Meta(max_length=2_000, pattern=NO_NUL)]
Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=4_000, pattern=NO_NUL)]
SortOrder = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]


class ToneOut(Schema):
    """A tone as clients see it (the prompt fragment is for the model, not for clients)."""

    id: UUID
    slug: str
    name: str
    description: str
    sort_order: int


class ToneRecord(Schema):
    """A tone as the cache holds it, prompt included (what the reply pipeline needs)."""

    id: UUID
    slug: str
    name: str
    description: str
    prompt: str
    is_active: bool
    sort_order: int
    updated_at: datetime

    def public(self) -> ToneOut:
        return ToneOut(
            id=self.id,
            slug=self.slug,
            name=self.name,
            description=self.description,
            sort_order=self.sort_order,
        )


class ToneCreate(Schema):
    slug: Slug
    name: ToneName
    prompt: Prompt
    description: Description = ""
    is_active: bool = True
    sort_order: SortOrder = 0


class TonePatch(Schema):
    """Fields left out are unchanged."""

    slug: Slug | msgspec.UnsetType = msgspec.UNSET
    name: ToneName | msgspec.UnsetType = msgspec.UNSET
    prompt: Prompt | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET
    sort_order: SortOrder | msgspec.UnsetType = msgspec.UNSET


class ConfigItemOut(Schema):
    """One config key as an admin sees it: the value in force and where it comes from."""

    key: str
    description: str
    value: dict[str, Any]
    default: dict[str, Any]
    public_fields: list[str]
    # False when no row is stored and the default applies.
    stored: bool
    updated_at: datetime | None
    updated_by: UUID | None
