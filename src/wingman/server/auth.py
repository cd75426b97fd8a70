"""Access tokens and the signed-in caller.

- Access tokens are HS256 JWTs made and checked by Litestar's :class:`JWTAuth`: claims ``sub``
  (user id), ``tier``, ``role``, ``iss``, ``iat``, ``exp`` (15 minutes by default). ``tier`` and
  ``role`` are top-level claims so clients can read them without knowing Litestar's layout.
- Every authenticated request runs :func:`retrieve_user`, which trusts the token's claims but asks
  :class:`UserStatusCache` whether the account is still active. The cache is per process and
  also holds the account's current tier, which replaces the token's ``tier`` claim in
  ``request.user``. Every change of status, tier or role is announced after its commit
  (``domain/realtime/account_changes``) and forgotten at once by every process that hears it; an
  entry lives ``auth.status_cache_heard_seconds`` (300) while the process hears the
  announcements, and ``auth.status_cache_seconds`` (at most 60) while it does not (Redis lost),
  so a disabled user is locked out at once, or within the short TTL when the announcement could
  not be heard. An active user costs one ``SELECT`` per process per TTL, not one per request.
- The caller is noted for ``users.last_seen_at`` (:mod:`wingman.server.last_seen`: in memory,
  written in batches in the background; the request never waits for it).

Routes under ``/health``, ``/api/docs`` and ``/api/v1/auth/`` are public; every other route needs
``Authorization: Bearer <access token>``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from uuid import UUID

import jwt
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.security.jwt import JWTAuth, Token
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from wingman.config import Settings
from wingman.db.models import User, UserRole, UserStatus, UserTier
from wingman.server.app_resources import Resources, app_resources
from wingman.server.errors import Problem

ALGORITHM = "HS256"
# Regular expressions matched against the path: these routes need no token.
# The WebSocket authenticates itself (subprotocol or first frame; see domain/realtime).
PUBLIC_PATHS = ["^/health", "^/api/docs", "^/api/v1/auth/", "^/api/v1/ws"]


class AuthUser(msgspec.Struct, frozen=True):
    """The caller as the access token describes them (``request.user``)."""

    id: UUID
    tier: UserTier
    role: UserRole

    @property
    def is_admin(self) -> bool:
        return self.role is UserRole.ADMIN


# Tokens whose signature and claims were checked, per process (see AccessToken.decode).
VERIFIED_TOKENS = 8192


class AccessToken(Token):
    """Litestar's token with ``extras`` written as top-level claims (decoding already reads them
    back into ``extras``).

    Decoding remembers the tokens it has verified (up to :data:`VERIFIED_TOKENS` per process,
    oldest forgotten first): a client sends the same token with every request for its 15
    minutes, and checking it again (base64, HMAC, JSON, claims) was the largest piece of a cached
    read after the Redis calls. A remembered token is found by its exact text and used only when
    it was checked with equal parameters (secret, algorithm, claims checks), so a changed byte
    or another secret is checked afresh; expiry is compared on every use, and an expired token
    goes through the full check, which raises the usual error.
    """

    @classmethod
    def decode(  # type: ignore[override]  # same parameters, passed on by keyword
        cls, encoded_token: str, secret: str, algorithm: str, **checks: Any
    ) -> AccessToken:
        # Keyed by the text alone and the parameters compared: a key made of them all cost
        # more than the rest of the lookup (the checks hold lists, so they are not hashable).
        known = _verified.get(encoded_token)
        if (
            known is not None
            and known.secret == secret
            and known.algorithm == algorithm
            and known.checks == checks
            and known.token.exp > datetime.now(UTC)
        ):
            return known.token
        token = super().decode(encoded_token, secret, algorithm, **checks)
        if encoded_token not in _verified and len(_verified) >= VERIFIED_TOKENS:
            del _verified[next(iter(_verified))]
        _verified[encoded_token] = _Verified(token, secret, algorithm, checks)
        return token

    def encode(self, secret: str, algorithm: str) -> str:
        claims = {k: v for k, v in asdict(self).items() if v is not None and k != "extras"}
        claims.update(self.extras)
        return jwt.encode(payload=claims, key=secret, algorithm=algorithm)


class _Verified(NamedTuple):
    """A verified token and the parameters it was checked with."""

    token: AccessToken
    secret: str
    algorithm: str
    checks: dict[str, Any]


_verified: dict[str, _Verified] = {}


def issue_access_token(settings: Settings, user_id: UUID, tier: str, role: str) -> str:
    """A signed access token for the user, valid ``auth.access_token_minutes``."""
    now = datetime.now(UTC)
    token = AccessToken(
        sub=str(user_id),
        exp=now + timedelta(minutes=settings.auth.access_token_minutes),
        iat=now,
        iss=settings.auth.issuer,
        extras={"tier": str(tier), "role": str(role)},
    )
    return token.encode(settings.security.jwt_key, ALGORITHM)


class Standing(msgspec.Struct, frozen=True):
    """What the status cache keeps of an account: whether it may sign in, and its tier now."""

    status: UserStatus
    tier: UserTier


class UserStatusCache:
    """Per-process TTL cache of "is this account active?" (and its current tier), bounded in size.

    A miss loads the account with one indexed ``SELECT``. How long an entry lives depends on
    whether the process hears account changes (:meth:`hearing`): ``heard_ttl`` seconds while it
    does, since every change through Wingman is announced and :meth:`forget` runs at once;
    ``ttl`` seconds while it does not, which is then the longest a disabled account keeps working,
    or keeps its old tier (plus one request in flight). ``ttl`` 0 turns the cache off. The loader
    returns a :class:`Standing` (or just a status, where the tier does not matter).

    A forget or a change of hearing while a load is in flight wins: the load's result is
    returned to its caller but not kept, as it may predate the change.

    At the short TTL alone, the cache read every active user's standing from PostgreSQL twice a
    minute per process (docs/performance.md, seventh round).
    """

    def __init__(self, ttl: float, heard_ttl: float = 0.0, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.heard_ttl = max(ttl, heard_ttl) if ttl > 0 else 0.0
        self.max_entries = max_entries
        self._entries: dict[UUID, tuple[Standing | UserStatus | None, float]] = {}
        self._heard = False
        # Moves on every forget and change of hearing: a load that saw it move keeps nothing.
        self._generation = 0

    @property
    def heard(self) -> bool:
        """Whether account changes reach this process now (see :meth:`hearing`)."""
        return self._heard

    def hearing(self, heard: bool) -> None:
        """Whether account changes reach this process from now on (the control channel's
        subscription confirmed by Redis) or no longer (the subscription lost). Every entry is
        dropped either way: a change may have been announced while nobody here listened."""
        self._heard = heard
        self._generation += 1
        self._entries.clear()

    async def is_active(
        self, user_id: UUID, load: Callable[[UUID], Awaitable[Standing | UserStatus | None]]
    ) -> bool:
        found = await self._lookup(user_id, load)
        status = found.status if isinstance(found, Standing) else found
        return status is UserStatus.ACTIVE

    async def standing(
        self, user_id: UUID, load: Callable[[UUID], Awaitable[Standing | None]]
    ) -> Standing | None:
        """The account's status and tier; None for an unknown account."""
        found = await self._lookup(user_id, load)
        if isinstance(found, Standing) or found is None:
            return found
        # An entry cached by a status-only loader: load the whole standing instead.
        self.forget(user_id)
        return await self.standing(user_id, load)

    async def _lookup(
        self, user_id: UUID, load: Callable[[UUID], Awaitable[Standing | UserStatus | None]]
    ) -> Standing | UserStatus | None:
        now = time.monotonic()
        cached = self._entries.get(user_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        generation = self._generation
        found = await load(user_id)
        ttl = self.heard_ttl if self._heard else self.ttl
        if ttl > 0 and generation == self._generation:
            self._remember(user_id, found, now + ttl)
        return found

    def forget(self, user_id: UUID) -> None:
        self._generation += 1
        self._entries.pop(user_id, None)

    def _remember(self, user_id: UUID, found: Standing | UserStatus | None, expires: float) -> None:
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[user_id] = (found, expires)


_STANDING = select(User.status, User.tier).where(User.id == bindparam("user_id"))


async def load_standing(engine: AsyncEngine, user_id: UUID) -> Standing | None:
    """One ``SELECT``; ``engine`` is the process's autocommit engine (no transaction around it)."""
    async with engine.connect() as connection:
        row = (await connection.execute(_STANDING, {"user_id": user_id})).first()
    return Standing(status=row.status, tier=row.tier) if row is not None else None


def _claims_user(token: Token) -> AuthUser:
    return _user_of(token.sub, str(token.extras.get("tier")), str(token.extras.get("role")))


@lru_cache(maxsize=VERIFIED_TOKENS)
def _user_of(sub: str, tier: str, role: str) -> AuthUser:
    """The caller named by a verified token's claims (parsed once per distinct claims: the
    result is immutable, and every request of a signed-in client carries the same ones)."""
    try:
        return AuthUser(id=UUID(sub), tier=UserTier(tier), role=UserRole(role))
    except ValueError:
        raise NotAuthorizedException("Invalid token") from None


class AccessTokenExpired(NotAuthorizedException):
    """The token was valid but its ``exp`` has passed: the client should refresh it."""


def decode_access_token(settings: Settings, encoded: str) -> tuple[AuthUser, datetime]:
    """The caller and expiry of an access token, checked exactly as the REST middleware checks it.

    For connections that authenticate outside the middleware (the WebSocket). Raises
    :class:`AccessTokenExpired` for an expired token, ``NotAuthorizedException`` for any other
    bad token.
    """
    try:
        token = AccessToken.decode(
            encoded_token=encoded,
            secret=settings.security.jwt_key,
            algorithm=ALGORITHM,
            issuer=[settings.auth.issuer],
            require_claims=["exp", "iat", "sub"],
        )
    except NotAuthorizedException as exc:
        if isinstance(exc.__cause__, jwt.ExpiredSignatureError):
            raise AccessTokenExpired("Token expired") from None
        raise
    return _claims_user(token), token.exp


async def account_is_active(connection: ASGIConnection[Any, Any, Any, Any], user_id: UUID) -> bool:
    """Whether the account may still use the API, through the process's status cache."""
    resources = app_resources(connection.app)
    engine = resources.autocommit_engine

    async def load(user_id: UUID) -> Standing | None:
        return await load_standing(engine, user_id)

    active: bool = await resources.user_status.is_active(user_id, load)
    return active


def verify_bearer(jwt_auth: JWTAuth[AuthUser, Token], encoded: str) -> Token:
    """The token of an ``Authorization: Bearer`` header checked exactly as ``jwt_auth``'s
    middleware checks it (the same parameters, so the same remembered verifications); raises
    ``NotAuthorizedException`` for a bad token."""
    return jwt_auth.token_cls.decode(
        encoded_token=encoded,
        secret=jwt_auth.token_secret,
        algorithm=jwt_auth.algorithm,
        audience=jwt_auth.accepted_audiences,
        issuer=jwt_auth.accepted_issuers,
        require_claims=jwt_auth.require_claims,
        verify_exp=jwt_auth.verify_expiry,
        verify_nbf=jwt_auth.verify_not_before,
        strict_audience=jwt_auth.strict_audience,
    )


async def retrieve_user(token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthUser:
    """JWTAuth's user handler: see :func:`signed_in_user`."""
    return await signed_in_user(token, app_resources(connection.app))


async def signed_in_user(token: Token, resources: Resources) -> AuthUser:
    """The caller of a verified token: claims, then the cached status check (which also brings
    the current tier), then a last-seen note. Raises a 401 problem for a disabled or deleted
    account."""
    user = _claims_user(token)
    # One statement, the standing read: no transaction around it.
    engine = resources.autocommit_engine

    async def load(user_id: UUID) -> Standing | None:
        return await load_standing(engine, user_id)

    standing = await resources.user_status.standing(user.id, load)
    if standing is None or standing.status is not UserStatus.ACTIVE:
        raise Problem(401, "account-disabled", "This account is disabled or deleted.")
    if standing.tier is not user.tier:
        user = msgspec.structs.replace(user, tier=standing.tier)
    resources.last_seen.touch(user.id)
    return user


def create_jwt_auth(settings: Settings) -> JWTAuth[AuthUser, Token]:
    """Litestar's JWT auth for the API; the middleware skips :data:`PUBLIC_PATHS`."""
    return JWTAuth[AuthUser, Token](
        retrieve_user_handler=retrieve_user,
        token_secret=settings.security.jwt_key,
        algorithm=ALGORITHM,
        token_cls=AccessToken,
        default_token_expiration=timedelta(minutes=settings.auth.access_token_minutes),
        accepted_issuers=[settings.auth.issuer],
        require_claims=["exp", "iat", "sub"],
        exclude=PUBLIC_PATHS,
        description="Access token from POST /api/v1/auth/otp/verify or /api/v1/auth/refresh.",
    )


def provide_current_user(request: Request[Any, Any, Any]) -> AuthUser:
    """Dependency ``current_user``: the authenticated caller of this request."""
    user = request.user
    if not isinstance(user, AuthUser):
        raise NotAuthorizedException("Authentication required")
    return user
