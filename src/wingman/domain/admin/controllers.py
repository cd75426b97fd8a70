"""Routes: ``/api/v1/admin/users`` (admins only)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, get, patch
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, Parameter, QueryParameter
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import Settings
from wingman.domain.admin.schemas import AdminUserOut, AdminUserPage, AdminUserPatch, admin_user_out
from wingman.domain.admin.services import AdminUserService
from wingman.domain.catalog.services import api_actor
from wingman.domain.realtime.account_changes import announce_account_change
from wingman.server.auth import AuthUser, UserStatusCache, provide_current_user
from wingman.server.cursors import MAX_CURSOR_CHARS, cursor_key
from wingman.server.guards import requires_admin

DEFAULT_PAGE = 20
MAX_PAGE = 100

# ``query`` is a name Litestar reserves for the parsed query string: bind it under another name.
SearchText = Annotated[str | None, QueryParameter(name="query", max_length=320)]
Cursor = Annotated[str | None, Parameter(max_length=MAX_CURSOR_CHARS)]
PageSize = Annotated[int, Parameter(ge=1, le=MAX_PAGE)]


def provide_admin_users(
    settings: NamedDependency[Settings], db_session: NamedDependency[AsyncSession]
) -> AdminUserService:
    return AdminUserService(db_session, cursor_key(settings.security.secret_key))


class AdminUserController(Controller):
    path = "/admin/users"
    tags = ("admin",)
    guards = [requires_admin]  # noqa: RUF012
    dependencies = {  # noqa: RUF012
        "current_user": Provide(provide_current_user, sync_to_thread=False),
        "users": Provide(provide_admin_users, sync_to_thread=False),
    }

    @get(
        "",
        summary="Search accounts, newest first",
        description=(
            "`query` matches the start of the email (any case) or of the phone number, literally"
            " (`%` and `_` are plain characters). Pages are keyset-ordered by (created_at desc,"
            " id): pass `next_cursor` back as `cursor`."
        ),
    )
    async def search(
        self,
        users: NamedDependency[AdminUserService],
        search_text: SearchText = None,
        cursor: Cursor = None,
        limit: PageSize = DEFAULT_PAGE,
    ) -> AdminUserPage:
        rows, next_cursor = await users.search(search_text, cursor, limit)
        return AdminUserPage(items=[admin_user_out(row) for row in rows], next_cursor=next_cursor)

    @get("/{user_id:uuid}", summary="One account")
    async def get_one(
        self, user_id: FromPath[UUID], users: NamedDependency[AdminUserService]
    ) -> AdminUserOut:
        return admin_user_out(await users.get_user(user_id))

    @patch(
        "/{user_id:uuid}",
        summary="Change an account's tier, role or status (audited)",
        description=(
            "Fields left out are unchanged. A disabled account is refused at once by every"
            " process: its next request answers 401 `account-disabled` and its open WebSockets"
            " close with 4003. A tier change applies to its next request; tier and role reach"
            " its tokens at its next refresh (open WebSockets get `account_updated`). Admins"
            " cannot demote or disable themselves (409 `cannot-demote-self`), and no change may"
            " leave no active admin, however changes interleave (409 `last-admin`)."
        ),
    )
    async def update(
        self,
        *,
        user_id: FromPath[UUID],
        data: JSONBody[AdminUserPatch],
        current_user: NamedDependency[AuthUser],
        users: NamedDependency[AdminUserService],
        user_status: NamedDependency[UserStatusCache],
        queue_redis: NamedDependency[Redis],
    ) -> AdminUserOut:
        actor = await api_actor(users.session, current_user.id)
        user = await users.patch_user(user_id, data, actor)
        out = admin_user_out(user)
        await users.session.commit()
        user_status.forget(user_id)
        # Every process: open sockets close (disabled) or learn the new tier and role, and
        # each status cache forgets the account.
        await announce_account_change(
            queue_redis, user_id, status=out.status, tier=out.tier, role=out.role
        )
        return out
