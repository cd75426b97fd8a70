"""Routes: an admin exports, deletes or restores an account (audited)."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, delete, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import Settings
from wingman.db.models import User, UserStatus
from wingman.domain.admin.schemas import AdminUserOut, admin_user_out
from wingman.domain.admin.services import LastAdminError, last_admin, user_not_found
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.services import api_actor, audit
from wingman.domain.privacy import exports
from wingman.domain.privacy.controllers import problem_responses
from wingman.domain.privacy.deletion import (
    AlreadyPurging,
    after_deletion,
    grace_days,
    mark_deleted,
    restore,
)
from wingman.domain.privacy.schemas import ExportOut, export_out
from wingman.queues import Queues
from wingman.server.auth import AuthUser, UserStatusCache, provide_current_user
from wingman.server.errors import Problem
from wingman.server.guards import requires_admin


async def locked_user(session: AsyncSession, user_id: UUID) -> User:
    user = await session.scalar(select(User).where(User.id == user_id).with_for_update())
    if user is None:
        raise user_not_found()
    return user


class AdminPrivacyController(Controller):
    path = "/admin/users"
    tags = ("admin",)
    guards = [requires_admin]  # noqa: RUF012
    dependencies = {"current_user": Provide(provide_current_user, sync_to_thread=False)}  # noqa: RUF012

    @post(
        "/{user_id:uuid}/exports",
        status_code=HTTP_202_ACCEPTED,
        summary="Export an account's data (audited)",
        description=(
            "The same archive as `POST /me/export`, on the host under `exports.dir`; the user"
            " is told with `export.ready` and can download it. 409 `export-in-progress` when"
            " one is already queued or running."
        ),
    )
    async def export_user(
        self,
        user_id: FromPath[UUID],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        queues: NamedDependency[Queues],
    ) -> ExportOut:
        await locked_user(db_session, user_id)
        try:
            row = await exports.start_export(db_session, user_id)
        except exports.ExportInProgress as exc:
            raise exports.in_progress_problem(exc.export_id) from None
        actor = await api_actor(db_session, current_user.id)
        audit(db_session, actor, "users.export", f"user:{user_id}", export_id=str(row.id))
        out = export_out(row, download_base=None)
        await db_session.commit()
        await exports.enqueue_export(queues["heavy"], settings, row.id)
        return out

    @delete(
        "/{user_id:uuid}",
        status_code=HTTP_202_ACCEPTED,
        responses=problem_responses(409),
        summary="Delete an account: locked out now, purged after the grace period (audited)",
        description=(
            "As `DELETE /me` without the code. Admins cannot delete themselves this way"
            " (409 `cannot-demote-self`), nor the last active admin (409 `last-admin`)."
        ),
    )
    async def delete_user(
        self,
        *,
        user_id: FromPath[UUID],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        queue_redis: NamedDependency[Redis],
        settings: NamedDependency[Settings],
        queues: NamedDependency[Queues],
        catalog: NamedDependency[CatalogCache],
        user_status: NamedDependency[UserStatusCache],
    ) -> AdminUserOut:
        if user_id == current_user.id:
            raise Problem(
                409, "cannot-demote-self", "Admins cannot delete their own account this way."
            )
        user = await locked_user(db_session, user_id)
        actor = await api_actor(db_session, current_user.id)
        try:
            await mark_deleted(db_session, user, await grace_days(db_session, catalog), actor)
        except LastAdminError:
            raise last_admin() from None
        out = admin_user_out(user)
        await db_session.commit()
        user_status.forget(user_id)
        await after_deletion(queue_redis, queues["heavy"], settings, user, status=out.status)
        return out

    @post(
        "/{user_id:uuid}/restore",
        status_code=HTTP_200_OK,
        summary="Restore a deleted account before its purge (audited)",
        description="409 `not-deleted` for an account that is not deleted, 409 `purge-due` once"
        " its grace period is over.",
    )
    async def restore_user(
        self,
        *,
        user_id: FromPath[UUID],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        queue_redis: NamedDependency[Redis],
        settings: NamedDependency[Settings],
        queues: NamedDependency[Queues],
        user_status: NamedDependency[UserStatusCache],
    ) -> AdminUserOut:
        user = await locked_user(db_session, user_id)
        if user.status is not UserStatus.DELETED:
            raise Problem(409, "not-deleted", "This account is not deleted.")
        try:
            await restore(db_session, user, await api_actor(db_session, current_user.id))
        except AlreadyPurging:
            raise Problem(
                409, "purge-due", "The grace period is over: this account is being purged."
            ) from None
        out = admin_user_out(user)
        await db_session.commit()
        user_status.forget(user_id)
        await after_deletion(queue_redis, queues["heavy"], settings, user, status=out.status)
        return out
