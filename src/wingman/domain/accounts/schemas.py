"""Request and response bodies of the accounts API (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from wingman.db.models import ReplyLength, User, UserRole, UserSettings, UserStatus, UserTier
from wingman.server.schema import Schema

# --- Auth -------------------------------------------------------------------------------------


class OtpRequestIn(Schema):
    channel: Literal["email", "sms"]
    destination: Annotated[str, msgspec.Meta(min_length=1, max_length=320)]


class OtpRequestOut(Schema):
    """The same shape whether or not an account exists for the destination."""

    request_id: UUID
    expires_in: int


class OtpVerifyIn(Schema):
    request_id: UUID
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class LoginLinkIn(Schema):
    """The token from a sign-in link's fragment: ``<request id>.<secret>``."""

    token: Annotated[str, msgspec.Meta(min_length=40, max_length=128)]


class RefreshIn(Schema):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class UserOut(Schema):
    id: UUID
    email: str | None
    phone: str | None
    display_name: str | None
    locale: str | None
    timezone: str | None
    tier: UserTier
    role: UserRole
    status: UserStatus
    created_at: datetime
    last_seen_at: datetime | None


class TokensOut(Schema):
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    user: UserOut
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret


# --- Me ---------------------------------------------------------------------------------------

DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
# BCP 47 language tag, loosely: "en", "pt-BR", "zh-Hant-TW".
LanguageTag = Annotated[
    str, msgspec.Meta(max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
]
TimeZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class MePatch(Schema):
    """Fields left out are unchanged; ``null`` clears a field."""

    display_name: DisplayName | msgspec.UnsetType | None = msgspec.UNSET
    locale: LanguageTag | msgspec.UnsetType | None = msgspec.UNSET
    timezone: TimeZoneName | msgspec.UnsetType | None = msgspec.UNSET


class SettingsIn(Schema):
    """The whole settings document (PUT replaces it)."""

    default_tone_id: UUID | None = None
    reply_length: ReplyLength = ReplyLength.MEDIUM
    language: LanguageTag | None = None


class SettingsOut(Schema):
    default_tone_id: UUID | None
    reply_length: ReplyLength
    language: str | None


def user_out(user: User, seen: datetime | None = None) -> UserOut:
    """``seen``: a last-seen time known to the caller but maybe not written yet; the later of it
    and the row's is shown."""
    last_seen_at = user.last_seen_at
    if seen is not None and (last_seen_at is None or seen > last_seen_at):
        last_seen_at = seen
    return UserOut(
        id=user.id,
        email=user.email,
        phone=user.phone,
        display_name=user.display_name,
        locale=user.locale,
        timezone=user.timezone,
        tier=user.tier,
        role=user.role,
        status=user.status,
        created_at=user.created_at,
        last_seen_at=last_seen_at,
    )


def settings_out(row: UserSettings) -> SettingsOut:
    return SettingsOut(
        default_tone_id=row.default_tone_id, reply_length=row.reply_length, language=row.language
    )
