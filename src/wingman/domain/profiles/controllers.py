"""Routes: ``/api/v1/profiles`` (CRUD of the caller's target profiles)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import Settings
from wingman.domain.profiles.schemas import (
    ProfileIn,
    ProfileOut,
    ProfilePage,
    ProfilePatch,
    profile_out,
)
from wingman.domain.profiles.services import ProfileService
from wingman.server.auth import AuthUser, provide_current_user
from wingman.server.cursors import cursor_key

DEFAULT_PAGE = 20
MAX_PAGE = 100


def provide_profiles(
    settings: NamedDependency[Settings],
    current_user: NamedDependency[AuthUser],
    db_session: NamedDependency[AsyncSession],
) -> ProfileService:
    return ProfileService(db_session, current_user.id, cursor_key(settings.security.secret_key))


class ProfileController(Controller):
    path = "/profiles"
    tags = ("profiles",)
    # Litestar reads this class attribute as the controller's dependency map.
    dependencies = {  # noqa: RUF012
        "current_user": Provide(provide_current_user, sync_to_thread=False),
        "profiles": Provide(provide_profiles, sync_to_thread=False),
    }

    @get("", summary="The caller's target profiles, most recently edited first")
    async def list_profiles(
        self,
        profiles: NamedDependency[ProfileService],
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> ProfilePage:
        rows, next_cursor = await profiles.list_page(cursor, limit)
        return ProfilePage(items=[profile_out(row) for row in rows], next_cursor=next_cursor)

    @post("", status_code=HTTP_201_CREATED, summary="Describe a new person")
    async def create_profile(
        self, data: JSONBody[ProfileIn], profiles: NamedDependency[ProfileService]
    ) -> ProfileOut:
        return profile_out(await profiles.create(msgspec.structs.asdict(data)))

    @get("/{profile_id:uuid}", summary="One target profile")
    async def get_profile(
        self, profile_id: FromPath[UUID], profiles: NamedDependency[ProfileService]
    ) -> ProfileOut:
        return profile_out(await profiles.get(profile_id))

    @patch("/{profile_id:uuid}", summary="Change a target profile")
    async def patch_profile(
        self,
        profile_id: FromPath[UUID],
        data: JSONBody[ProfilePatch],
        profiles: NamedDependency[ProfileService],
    ) -> ProfileOut:
        changes = {
            name: value
            for name, value in msgspec.structs.asdict(data).items()
            if value is not msgspec.UNSET
        }
        return profile_out(await profiles.update(profile_id, changes))

    @delete(
        "/{profile_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a target profile (its sessions remain, without a profile)",
    )
    async def delete_profile(
        self, profile_id: FromPath[UUID], profiles: NamedDependency[ProfileService]
    ) -> None:
        await profiles.delete(profile_id)
