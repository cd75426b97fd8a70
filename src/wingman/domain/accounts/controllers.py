"""Routes: ``/api/v1/auth/*`` (public) and ``/api/v1/me`` (signed in)."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Controller, MediaType, Request, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from wingman.config import Settings
from wingman.db.models import AuditLogEntry, OtpChannel, User, UserStatus
from wingman.domain.accounts.delivery import OtpMessage, backend_for
from wingman.domain.accounts.destinations import InvalidDestination, normalise
from wingman.domain.accounts.login_links import login_link_asset, parse_link_token
from wingman.domain.accounts.schemas import (
    LoginLinkIn,
    MePatch,
    OtpRequestIn,
    OtpRequestOut,
    OtpVerifyIn,
    RefreshIn,
    SettingsIn,
    SettingsOut,
    TokensOut,
    UserOut,
    settings_out,
    user_out,
)
from wingman.domain.accounts.services import (
    LINK,
    OtpService,
    RefreshTokenService,
    SettingsService,
    UserService,
    check_time_zone,
    restore_deleted,
    schedule_delivery,
)
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.request_limits import rate_limits, rule_for
from wingman.domain.realtime.account_changes import announce_account_change
from wingman.queues import Queues
from wingman.server.auth import AuthUser, UserStatusCache, issue_access_token, provide_current_user
from wingman.server.client_ip import ClientAddresses
from wingman.server.errors import Problem
from wingman.server.last_seen import LastSeenTracker
from wingman.server.ratelimit import RateLimiter

log = structlog.get_logger(__name__)


def tokens_for(settings: Settings, user: User, refresh_token: str) -> TokensOut:
    """The sign-in answer: a new access token for ``user`` and the given refresh token."""
    access = issue_access_token(settings, user.id, user.tier, user.role)
    return TokensOut(
        access_token=access,
        expires_in=settings.auth.access_token_minutes * 60,
        refresh_token=refresh_token,
        refresh_expires_in=settings.auth.refresh_token_days * 86_400,
        user=user_out(user),
    )


class AuthController(Controller):
    path = "/auth"
    # Public: sign-in is how a client gets a token (see PUBLIC_PATHS in server/auth.py).
    security = ({},)
    tags = ("auth",)

    @post(
        "/otp/request",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a one-time sign-in code",
        description=(
            "Always 202 with a request id, whether or not an account exists for the destination."
            " At most the `rate_limits.otp` allowance (global config) per destination and per"
            " client IP (429 with Retry-After beyond that; 503 while allowances cannot be"
            " checked)."
        ),
    )
    async def request_code(
        self,
        *,
        data: JSONBody[OtpRequestIn],
        request: Request[Any, Any, Any],
        queue_redis: NamedDependency[Redis],
        settings: NamedDependency[Settings],
        queues: NamedDependency[Queues],
        catalog: NamedDependency[CatalogCache],
        rate_limiter: NamedDependency[RateLimiter],
        db_engine: NamedDependency[AsyncEngine],
        client_addresses: NamedDependency[ClientAddresses],
        db_session: NamedDependency[AsyncSession],
    ) -> OtpRequestOut:
        # Fail closed: codes cost money to send, so none go out while they cannot be counted.
        allowance = (await rate_limits(catalog, db_engine)).otp.notation
        ip = client_addresses.of(request.scope)
        await rate_limiter.enforce((rule_for("otp:ip", allowance), ip), fail_closed=True)
        channel = OtpChannel(data.channel)
        if backend_for(settings.delivery, channel.value) == "disabled":
            raise Problem(
                400,
                "channel-disabled",
                f"This server does not send codes by {channel.value}; use the other channel.",
            )
        try:
            destination = normalise(channel, data.destination)
        except InvalidDestination as exc:
            raise Problem(
                400,
                "validation-failed",
                "The destination is not valid for its channel.",
                extra={"errors": [{"key": "destination", "message": str(exc), "source": "body"}]},
            ) from None
        otp = OtpService(db_session, settings)
        await rate_limiter.enforce(
            (rule_for("otp:destination", allowance), otp.destination_hash(channel, destination)),
            fail_closed=True,
        )
        issued = await otp.issue(channel, destination, ip)
        await schedule_delivery(
            queue_redis,
            queues["default"],
            settings,
            OtpMessage(
                request_id=str(issued.request_id),
                channel=channel.value,
                destination=destination,
                code=issued.code,
            ),
        )
        log.info("otp_requested", request_id=str(issued.request_id), channel=channel.value)
        return OtpRequestOut(request_id=issued.request_id, expires_in=settings.otp.code_ttl_seconds)

    @post(
        "/otp/verify",
        status_code=HTTP_200_OK,
        summary="Exchange a one-time code for tokens",
        description="Creates the account on its first successful verify (tier free, role user).",
    )
    async def verify_code(
        self,
        *,
        data: JSONBody[OtpVerifyIn],
        request: Request[Any, Any, Any],
        queue_redis: NamedDependency[Redis],
        settings: NamedDependency[Settings],
        user_status: NamedDependency[UserStatusCache],
        db_session: NamedDependency[AsyncSession],
    ) -> TokensOut:
        verified = await OtpService(db_session, settings).verify(data.request_id, data.code)
        users = UserService(session=db_session)
        user, created = await users.find_or_create(verified.channel, verified.destination)
        # Signing in during a deletion's grace period restores the account (docs/privacy.md).
        restored = user.status is UserStatus.DELETED and await restore_deleted(
            db_session, user, actor=f"user:{user.id}", actor_id=user.id
        )
        if user.status is not UserStatus.ACTIVE:
            await db_session.commit()  # the code stays spent
            raise Problem(403, "account-disabled", "This account is disabled or deleted.")
        refresh, _ = await RefreshTokenService(db_session, settings).create(
            user.id, request.headers.get("user-agent")
        )
        await db_session.commit()
        if restored:
            user_status.forget(user.id)
            await announce_account_change(
                queue_redis, user.id, status=user.status, tier=user.tier, role=user.role
            )
        log.info("user_signed_in", user_id=str(user.id), created=created, restored=restored)
        return tokens_for(settings, user, refresh)

    @get("/login-link", media_type=MediaType.HTML, include_in_schema=False, cache=False)
    async def login_link_page(self) -> bytes:
        """The page a sign-in link opens; a GET never spends the link (see login_links)."""
        return login_link_asset("index.html")

    @get(
        "/login-link/sign-in.js",
        media_type="text/javascript; charset=utf-8",
        include_in_schema=False,
    )
    async def login_link_script(self) -> bytes:
        return login_link_asset("sign-in.js")

    @post(
        "/login-link",
        status_code=HTTP_200_OK,
        summary="Exchange a one-time sign-in link for tokens",
        description=(
            "The token is the fragment of a link from `wingmanctl users login-link`. A link signs"
            " in once: a second use is `400 login-link-used`, an old one `400 login-link-expired`."
            " It never creates an account (the account must exist and be active)."
        ),
    )
    async def redeem_login_link(
        self,
        data: JSONBody[LoginLinkIn],
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        db_session: NamedDependency[AsyncSession],
    ) -> TokensOut:
        request_id, secret = parse_link_token(data.token)
        verified = await OtpService(db_session, settings).verify(request_id, secret, LINK)
        user = await UserService(session=db_session).find_by_destination(
            verified.channel, verified.destination
        )
        if user is None or user.status is not UserStatus.ACTIVE:
            await db_session.commit()  # the link stays spent
            raise Problem(403, "account-disabled", "This account is disabled or deleted.")
        refresh, _ = await RefreshTokenService(db_session, settings).create(
            user.id, request.headers.get("user-agent")
        )
        db_session.add(
            AuditLogEntry(
                actor=f"user:{user.id}",
                actor_id=user.id,
                action="auth.login_link",
                target=str(user.id),
                details={"request_id": str(request_id)},
            )
        )
        await db_session.commit()
        log.info("user_signed_in", user_id=str(user.id), created=False, login_link=True)
        return tokens_for(settings, user, refresh)

    @post(
        "/refresh",
        status_code=HTTP_200_OK,
        summary="Rotate a refresh token and get a new access token",
    )
    async def refresh(
        self,
        data: JSONBody[RefreshIn],
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        db_session: NamedDependency[AsyncSession],
    ) -> TokensOut:
        issued = await RefreshTokenService(db_session, settings).rotate(
            data.refresh_token, request.headers.get("user-agent")
        )
        return tokens_for(settings, issued.user, issued.token)

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke the refresh token and every token rotated from the same sign-in",
    )
    async def logout(
        self,
        data: JSONBody[RefreshIn],
        settings: NamedDependency[Settings],
        db_session: NamedDependency[AsyncSession],
    ) -> None:
        await RefreshTokenService(db_session, settings).logout(data.refresh_token)


class MeController(Controller):
    path = "/me"
    tags = ("me",)
    # Litestar reads this class attribute as the controller's dependency map.
    dependencies = {"current_user": Provide(provide_current_user, sync_to_thread=False)}  # noqa: RUF012

    @get("", summary="The signed-in user")
    async def get_me(
        self,
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        last_seen: NamedDependency[LastSeenTracker],
    ) -> UserOut:
        user = await UserService(session=db_session).get(current_user.id)
        # This request's own note may not be written yet (server/last_seen.py).
        return user_out(user, seen=last_seen.noted(current_user.id))

    @patch("", summary="Change display name, locale or time zone")
    async def patch_me(
        self,
        data: JSONBody[MePatch],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
    ) -> UserOut:
        changes = {
            name: getattr(data, name)
            for name in ("display_name", "locale", "timezone")
            if getattr(data, name) is not msgspec.UNSET
        }
        if isinstance(changes.get("display_name"), str):
            changes["display_name"] = changes["display_name"].strip() or None
        if isinstance(changes.get("timezone"), str):
            check_time_zone(changes["timezone"])
        users = UserService(session=db_session)
        if not changes:
            return user_out(await users.get(current_user.id))
        user = await users.update(changes, item_id=current_user.id)
        return user_out(user)

    @get("/settings", summary="Reply preferences")
    async def get_settings(
        self, current_user: NamedDependency[AuthUser], db_session: NamedDependency[AsyncSession]
    ) -> SettingsOut:
        return settings_out(await SettingsService(db_session).get(current_user.id))

    @put("/settings", summary="Replace the reply preferences")
    async def put_settings(
        self,
        data: JSONBody[SettingsIn],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
    ) -> SettingsOut:
        return settings_out(await SettingsService(db_session).replace(current_user.id, data))
