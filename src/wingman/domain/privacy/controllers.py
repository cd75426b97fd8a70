"""Routes: ``/api/v1/me/export``, ``/api/v1/me/exports/{id}`` and ``DELETE /api/v1/me``."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from uuid import UUID

import structlog
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import Settings
from wingman.db.models import OtpChannel, User, UserStatus
from wingman.domain.accounts.services import OtpService
from wingman.domain.admin.services import LastAdminError, last_admin
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.registry import RateLimits
from wingman.domain.catalog.request_limits import rule_for
from wingman.domain.catalog.services import config_value
from wingman.domain.privacy import exports
from wingman.domain.privacy.deletion import account_actor, after_deletion, grace_days, mark_deleted
from wingman.domain.privacy.schemas import DeleteMeIn, DeletionOut, ExportOut, export_out
from wingman.queues import Queues
from wingman.server.auth import AuthUser, UserStatusCache, provide_current_user
from wingman.server.byte_ranges import file_download
from wingman.server.compression import SKIP_COMPRESSION
from wingman.server.errors import Problem
from wingman.server.ratelimit import RateLimiter

log = structlog.get_logger(__name__)


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """Error answers an operation documents beyond those its shape implies."""
    return {
        status: ResponseSpec(data_container=None, description=HTTPStatus(status).phrase)
        for status in statuses
    }


class PrivacyController(Controller):
    path = "/me"
    tags = ("me",)
    dependencies = {"current_user": Provide(provide_current_user, sync_to_thread=False)}  # noqa: RUF012

    @post(
        "/export",
        status_code=HTTP_202_ACCEPTED,
        summary="Export everything the account holds",
        description=(
            "Queues a job that writes one zip archive (JSON Lines per table, `manifest.json`"
            " with row counts and SHA-256 checksums; docs/privacy.md). When it is ready the"
            " WebSocket gets `export.ready` and `GET /me/exports/{id}` gives the download."
            " One export at a time (409 `export-in-progress`), at most the `rate_limits.export`"
            " allowance (global config) per user."
        ),
    )
    async def request_export(
        self,
        *,
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        queues: NamedDependency[Queues],
        catalog: NamedDependency[CatalogCache],
        rate_limiter: NamedDependency[RateLimiter],
    ) -> ExportOut:
        limiter: RateLimiter = rate_limiter
        limits = await config_value(catalog, db_session, "rate_limits", RateLimits)
        await limiter.enforce(
            (rule_for("export:user", limits.export.notation), str(current_user.id))
        )
        try:
            row = await exports.start_export(db_session, current_user.id)
        except exports.ExportInProgress as exc:
            raise exports.in_progress_problem(exc.export_id) from None
        out = export_out(row)
        await db_session.commit()
        await exports.enqueue_export(queues["heavy"], settings, row.id)
        log.info("export_requested", export_id=str(row.id))
        return out

    @get("/exports/{export_id:uuid}", summary="An export's status, with its download when ready")
    async def get_export(
        self,
        export_id: FromPath[UUID],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
    ) -> ExportOut:
        return export_out(await exports.get_export(db_session, current_user.id, export_id))

    @get(
        "/exports/{export_id:uuid}/download",
        summary="Download a ready export (application/zip)",
        description=(
            "404 until the export is ready and after it expired. One byte range per request"
            " (`Range: bytes=<from>-`, answered 206) resumes a cut download; `If-Range` with"
            " the ETag makes sure the pieces are of one file."
        ),
        responses=problem_responses(416),
        media_type="application/zip",
        opt={SKIP_COMPRESSION: True},  # a zip is compressed already
    )
    async def download_export(
        self,
        export_id: FromPath[UUID],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        request: Request[Any, Any, Any],
    ) -> Response[Any]:
        row = await exports.get_export(db_session, current_user.id, export_id)
        path = exports.file_of(settings, row)
        if path is None:
            raise Problem(404, "export-not-ready", "This export is not ready, or has expired.")
        # An export's file never changes once written: its id and size name its content.
        return file_download(
            request,
            path,
            filename=f"wingman-export-{row.created_at:%Y%m%d}-{row.id}.zip",
            media_type="application/zip",
            etag=f"{row.id}-{row.size_bytes}",
        )

    @delete(
        "",
        status_code=HTTP_202_ACCEPTED,
        # A DELETE with a body: the code's own errors, as at sign-in (server/openapi.py turns
        # these into problem responses).
        responses=problem_responses(400, 403, 404, 409, 422),
        summary="Delete the account (confirmed with a fresh one-time code)",
        description=(
            "First request a code for the account's own email or phone (`POST"
            " /auth/otp/request`), then send its `request_id` and `code` here. The account is"
            " `deleted` at once: every token and WebSocket stops working. Signing in again"
            " before `purge_after` (global config `privacy.deletion_grace_days`) restores it;"
            " after that every row is purged (docs/privacy.md)."
        ),
    )
    async def delete_me(
        self,
        *,
        data: JSONBody[DeleteMeIn],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        queue_redis: NamedDependency[Redis],
        settings: NamedDependency[Settings],
        queues: NamedDependency[Queues],
        catalog: NamedDependency[CatalogCache],
        user_status: NamedDependency[UserStatusCache],
    ) -> DeletionOut:
        verified = await OtpService(db_session, settings).verify(data.request_id, data.code)
        user = await db_session.scalar(
            select(User).where(User.id == current_user.id).with_for_update()
        )
        if user is None:
            raise Problem(401, "account-disabled", "This account is disabled or deleted.")
        own = (
            verified.destination.lower() == (user.email or "").lower()
            if verified.channel is OtpChannel.EMAIL
            else verified.destination == user.phone
        )
        if not own:
            await db_session.commit()  # the code stays spent
            raise Problem(
                403,
                "otp-not-for-this-account",
                "The code was not sent to this account's email or phone.",
            )
        grace = await grace_days(db_session, catalog)
        try:
            await mark_deleted(db_session, user, grace, account_actor(user.id))
        except LastAdminError:
            raise last_admin() from None
        if user.deleted_at is None or user.purge_after is None:  # pragma: no cover
            raise RuntimeError("a deleted account without its deletion times")
        out = DeletionOut(
            status=UserStatus.DELETED, deleted_at=user.deleted_at, purge_after=user.purge_after
        )
        await db_session.commit()
        user_status.forget(user.id)
        await after_deletion(
            queue_redis, queues["heavy"], settings, user, status=UserStatus.DELETED
        )
        log.info("account_deleted", user_id=str(user.id), grace_days=grace)
        return out
