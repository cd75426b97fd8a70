"""Sign-in by one-time code, refresh-token rotation and the caller's profile and settings.

Transactions are committed here, explicitly, at the points where a change must hold even though
the request then fails: a wrong code's attempt, a refresh-token family revoked for reuse. (The
web session commits on 2xx only and rolls back on 4xx, which would undo exactly those writes.)
"""

from __future__ import annotations

import functools
import secrets
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
import structlog
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from redis.asyncio import Redis
from saq import Queue
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from wingman.config import Settings
from wingman.db.models import (
    AuditLogEntry,
    OtpChannel,
    OtpRequest,
    RefreshToken,
    ReplyLength,
    Tone,
    User,
    UserRole,
    UserSettings,
    UserStatus,
    utcnow,
)
from wingman.domain.accounts import hashing
from wingman.domain.accounts.delivery import OtpMessage
from wingman.domain.accounts.jobs import payload_key
from wingman.domain.accounts.schemas import SettingsIn
from wingman.queues import enqueue
from wingman.server.errors import Problem

log = structlog.get_logger(__name__)

USER_AGENT_MAX = 512


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    """Users through advanced-alchemy's repository (get, update, list, create)."""

    class Repository(SQLAlchemyAsyncRepository[User]):
        model_type = User

    repository_type = Repository

    async def find_by_destination(self, channel: OtpChannel, destination: str) -> User | None:
        """The account for a normalised destination (email matched case-insensitively)."""
        condition = (
            func.lower(User.email) == destination.lower()
            if channel is OtpChannel.EMAIL
            else User.phone == destination
        )
        return await self.get_one_or_none(condition)

    async def find_or_create(
        self, channel: OtpChannel, destination: str, *, role: UserRole = UserRole.USER
    ) -> tuple[User, bool]:
        """The destination's account, created (tier free) when there is none; race-safe.

        Two first sign-ins at once both try the insert; the unique index lets one win and the
        other finds the winner's row.
        """
        column = "email" if channel is OtpChannel.EMAIL else "phone"
        inserted = await self.repository.session.scalar(
            insert(User)
            .values(id=uuid7(), role=role, **{column: destination})
            .on_conflict_do_nothing()
            .returning(User.id)
        )
        user = await self.find_by_destination(channel, destination)
        if user is None:  # pragma: no cover - the insert or a concurrent one made it
            raise RuntimeError("account vanished right after its insert")
        return user, inserted is not None


async def restore_deleted(
    session: AsyncSession, user: User, *, actor: str, actor_id: UUID | None
) -> bool:
    """Undo a deletion (domain/privacy) while the account's purge is not yet due; audited.

    False, and nothing changed, when ``user`` is not deleted or its grace period is over. The
    row is locked first, so a purge that became due meanwhile wins.
    """
    restored = await session.scalar(
        update(User)
        .where(User.id == user.id, User.status == UserStatus.DELETED, User.purge_after > func.now())
        .values(status=UserStatus.ACTIVE, deleted_at=None, purge_after=None, updated_at=utcnow())
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    if restored is None:
        return False
    await session.refresh(user)
    session.add(
        AuditLogEntry(
            actor=actor, actor_id=actor_id, action="users.restore", target=f"user:{user.id}"
        )
    )
    return True


# --- One-time codes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedCode:
    request_id: UUID
    code: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class VerifiedDestination:
    channel: OtpChannel
    destination: str


@dataclass(frozen=True, slots=True)
class SecretKind:
    """How one kind of one-time secret is hashed and how its refusals read.

    A sign-in code and a sign-in link (``wingmanctl users login-link``) are both rows of
    ``otp_requests``, spent the same way (attempts counted first, consumed once, expiring);
    their digests have different purposes, so neither can be redeemed as the other.
    """

    purpose: str
    noun: str
    renew: str
    slugs: dict[str, str]

    def digest(self, key: str, request_id: str, secret: str) -> str:
        # For codes this is hashing.code_hash: the same purpose and message.
        return hashing.keyed_hash(key, self.purpose, f"{request_id}:{secret}")


CODE = SecretKind(
    purpose="otp-code",
    noun="code",
    renew="request a new one",
    slugs={
        "not-found": "otp-request-not-found",
        "used": "otp-code-used",
        "expired": "otp-code-expired",
        "exhausted": "otp-attempts-exhausted",
        "invalid": "otp-code-invalid",
    },
)
LINK = SecretKind(
    purpose="login-link",
    noun="sign-in link",
    renew="ask an admin for a new one",
    slugs={
        "not-found": "login-link-invalid",
        "used": "login-link-used",
        "expired": "login-link-expired",
        "exhausted": "login-link-invalid",
        "invalid": "login-link-invalid",
    },
)


class OtpService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self._key = settings.security.otp_hash_key

    def destination_hash(self, channel: OtpChannel, destination: str) -> str:
        return hashing.destination_hash(self._key, channel.value, destination)

    async def issue(self, channel: OtpChannel, destination: str, ip: str | None) -> IssuedCode:
        """Store a new code request (hashed) and commit; the same work for any destination."""
        return await self._store(
            CODE,
            channel,
            destination,
            hashing.new_code(),
            ttl_seconds=self.settings.otp.code_ttl_seconds,
            ip=ip,
        )

    async def issue_link(
        self, channel: OtpChannel, destination: str, ttl_seconds: int
    ) -> IssuedCode:
        """A sign-in link's secret for an existing account's destination (256 random bits).

        Flushed, not committed: the caller commits it with its audit entry.
        """
        return await self._store(
            LINK,
            channel,
            destination,
            secrets.token_urlsafe(32),
            ttl_seconds=ttl_seconds,
            ip=None,
            commit=False,
        )

    async def _store(
        self,
        kind: SecretKind,
        channel: OtpChannel,
        destination: str,
        code: str,
        *,
        ttl_seconds: int,
        ip: str | None,
        commit: bool = True,
    ) -> IssuedCode:
        request_id = UUID(str(uuid7()))
        dest_hash = self.destination_hash(channel, destination)
        now = utcnow()
        expires_at = now + timedelta(seconds=ttl_seconds)
        # Expired requests for this destination no longer need the address itself.
        await self.session.execute(
            update(OtpRequest)
            .where(
                OtpRequest.destination_hash == dest_hash,
                OtpRequest.expires_at <= now,
                OtpRequest.destination.is_not(None),
            )
            .values(destination=None)
            .execution_options(synchronize_session=False)
        )
        self.session.add(
            OtpRequest(
                id=request_id,
                destination_hash=dest_hash,
                channel=channel,
                code_hash=kind.digest(self._key, str(request_id), code),
                attempts=0,
                expires_at=expires_at,
                requester_ip=ip[:45] if ip else None,
                destination=destination,
            )
        )
        if commit:
            await self.session.commit()
        else:
            await self.session.flush()
        return IssuedCode(request_id, code, expires_at)

    async def verify(
        self, request_id: UUID, code: str, kind: SecretKind = CODE
    ) -> VerifiedDestination:
        """Check ``code`` against the request; the attempt counts (and is committed) first.

        The counter goes up in one ``UPDATE ... RETURNING``, so concurrent guesses cannot get
        past the limit: the 6th attempt fails even with the right code. ``kind`` says whether
        ``code`` is a six-digit code or a sign-in link's secret.
        """
        row = (
            await self.session.execute(
                update(OtpRequest)
                .where(OtpRequest.id == request_id)
                .values(attempts=OtpRequest.attempts + 1)
                .returning(
                    OtpRequest.attempts,
                    OtpRequest.code_hash,
                    OtpRequest.expires_at,
                    OtpRequest.consumed_at,
                    OtpRequest.channel,
                    OtpRequest.destination,
                )
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        await self.session.commit()
        slugs, noun, renew = kind.slugs, kind.noun, kind.renew
        if row is None:
            status = 404 if kind is CODE else 400
            raise Problem(status, slugs["not-found"], f"No such {noun}.")
        attempts, stored_hash, expires_at, consumed_at, channel, destination = row
        if consumed_at is not None:
            raise Problem(400, slugs["used"], f"This {noun} was already used; {renew}.")
        if expires_at <= utcnow() or destination is None:
            raise Problem(400, slugs["expired"], f"This {noun} has expired; {renew}.")
        max_attempts = self.settings.otp.max_attempts
        if attempts > max_attempts:
            raise Problem(
                400, slugs["exhausted"], f"Too many wrong tries for this {noun}; {renew}."
            )
        candidate = kind.digest(self._key, str(request_id), code)
        if not hashing.same_digest(candidate, stored_hash):
            raise Problem(
                400,
                slugs["invalid"],
                f"The {noun} is not correct.",
                extra={"attempts_left": max_attempts - attempts},
            )
        # Consume once: a concurrent verify of the same code finds consumed_at set and fails.
        consumed = await self.session.scalar(
            update(OtpRequest)
            .where(OtpRequest.id == request_id, OtpRequest.consumed_at.is_(None))
            .values(consumed_at=utcnow(), destination=None)
            .returning(OtpRequest.id)
            .execution_options(synchronize_session=False)
        )
        if consumed is None:
            raise Problem(400, slugs["used"], f"This {noun} was already used; {renew}.")
        return VerifiedDestination(OtpChannel(channel), destination)


async def schedule_delivery(
    redis: Redis, queue: Queue, settings: Settings, message: OtpMessage
) -> None:
    """Park the message in Redis for the code's lifetime, then enqueue the job that sends it.

    Call after the request's transaction has committed, so the worker never looks for a row
    that is not there yet. The job's only argument is the request id (see ``jobs``).
    """
    await redis.set(
        payload_key(message.request_id),
        msgspec.json.encode(message),
        ex=settings.otp.code_ttl_seconds,
    )
    await enqueue(
        queue,
        settings,
        "deliver_otp",
        key=f"deliver_otp:{message.request_id}",
        request_id=message.request_id,
    )


# --- Refresh tokens ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedRefresh:
    token: str
    user: User


class RefreshTokenService:
    """Opaque refresh tokens, stored hashed, rotated on use; reuse revokes the whole family."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self._key = settings.security.otp_hash_key

    @property
    def lifetime(self) -> timedelta:
        return timedelta(days=self.settings.auth.refresh_token_days)

    async def create(
        self, user_id: UUID, user_agent: str | None, family_id: UUID | None = None
    ) -> tuple[str, RefreshToken]:
        token = hashing.new_refresh_token()
        row = RefreshToken(
            id=UUID(str(uuid7())),
            user_id=user_id,
            family_id=family_id or UUID(str(uuid7())),
            token_hash=hashing.refresh_token_hash(self._key, token),
            expires_at=utcnow() + self.lifetime,
            user_agent=user_agent[:USER_AGENT_MAX] if user_agent else None,
        )
        self.session.add(row)
        await self.session.flush()
        return token, row

    async def rotate(self, token: str, user_agent: str | None) -> IssuedRefresh:
        """Spend ``token`` and return its successor (same family) with the current user row."""
        row = await self.session.scalar(
            select(RefreshToken)
            .where(RefreshToken.token_hash == hashing.refresh_token_hash(self._key, token))
            .with_for_update()
        )
        if row is None:
            raise Problem(401, "refresh-token-invalid", "Unknown refresh token.")
        if row.replaced_by is not None:
            # A spent token came back: either the client or a thief holds a copy. Revoke all.
            await self.revoke_family(row.family_id)
            await self.session.commit()
            log.warning("refresh_token_reused", user_id=str(row.user_id), family=str(row.family_id))
            raise Problem(
                401,
                "refresh-token-reused",
                "This refresh token was already used; every session of this sign-in is revoked.",
            )
        if row.revoked_at is not None:
            raise Problem(401, "refresh-token-revoked", "This refresh token was revoked.")
        if row.expires_at <= utcnow():
            raise Problem(401, "refresh-token-expired", "This refresh token has expired.")
        user = await self.session.get_one(User, row.user_id)
        if user.status is not UserStatus.ACTIVE:
            await self.revoke_family(row.family_id)
            await self.session.commit()
            raise Problem(401, "account-disabled", "This account is disabled or deleted.")
        new_token, new_row = await self.create(user.id, user_agent, family_id=row.family_id)
        row.replaced_by = new_row.id
        await self.session.commit()
        return IssuedRefresh(new_token, user)

    async def revoke_family(self, family_id: UUID) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def logout(self, token: str) -> bool:
        """Revoke the family of ``token``; False when the token is unknown (nothing to do)."""
        family_id = await self.session.scalar(
            select(RefreshToken.family_id).where(
                RefreshToken.token_hash == hashing.refresh_token_hash(self._key, token)
            )
        )
        if family_id is None:
            return False
        await self.revoke_family(family_id)
        await self.session.commit()
        return True


# --- Profile and settings ---------------------------------------------------------------------


@functools.cache
def known_time_zones() -> frozenset[str]:
    """IANA zone names this host knows (read once; the set does not change while running)."""
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def check_time_zone(name: str) -> None:
    if name not in known_time_zones():
        raise Problem(
            400,
            "validation-failed",
            "Unknown time zone.",
            extra={
                "errors": [
                    {"key": "timezone", "message": "not an IANA time zone name", "source": "body"}
                ]
            },
        )


class SettingsService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: UUID) -> UserSettings:
        """The user's settings; defaults (not stored) until the first PUT."""
        found = await self.session.get(UserSettings, user_id)
        return found or UserSettings(user_id=user_id, reply_length=ReplyLength.MEDIUM, extra={})

    async def replace(self, user_id: UUID, data: SettingsIn) -> UserSettings:
        if data.default_tone_id is not None:
            active = await self.session.scalar(
                select(Tone.id).where(Tone.id == data.default_tone_id, Tone.is_active)
            )
            if active is None:
                raise Problem(
                    400,
                    "validation-failed",
                    "Unknown tone.",
                    extra={
                        "errors": [
                            {"key": "default_tone_id", "message": "no such tone", "source": "body"}
                        ]
                    },
                )
        values: dict[str, Any] = {
            "default_tone_id": data.default_tone_id,
            "reply_length": data.reply_length,
            "language": data.language,
        }
        await self.session.execute(
            insert(UserSettings)
            .values(user_id=user_id, **values)
            .on_conflict_do_update(
                index_elements=[UserSettings.user_id],
                set_={**values, "updated_at": datetime.now(UTC)},
            )
        )
        stored = await self.session.scalar(
            select(UserSettings)
            .where(UserSettings.user_id == user_id)
            .execution_options(populate_existing=True)
        )
        assert stored is not None  # noqa: S101 - the upsert above made it
        return stored
