"""The overall request allowance of every ``/api/v1`` HTTP request, by tier.

- Anonymous callers (the public sign-in routes) count per client IP under ``anon:ip``.
- Signed-in callers count per user id under ``api:user`` with the ``user`` or ``premium``
  allowance. The tier is the account's current one, not the token's: the auth middleware replaces
  it from the per-process status cache (server/auth.py), so a tier change applies at once
  (announced; within ``auth.status_cache_seconds`` where Redis is lost) without a new token.

Allowances are the ``rate_limits`` global config, read through the per-process catalog cache that
every process drops when an admin changes config, so a change applies without a restart. The
``limits`` key of each window includes the allowance, so a caller whose allowance changes starts
a fresh window under the new one.

Allowed responses carry ``RateLimit-Limit/Remaining/Reset``; a refusal is a 429 problem with
``Retry-After`` as well. If Redis cannot be reached the request goes on uncounted (fail open; see
server/ratelimit.py). Requests refused by authentication (a bad token) never get this far. The
message routes count their own ``chat`` and ``ai`` scopes on top of this.

Runs as middleware of the ``/api/v1`` router: health checks, the API docs, ``/metrics`` and the
WebSocket are outside it.

The same script call reads a signed-in caller's read-cache version and keeps it in the scope
(server/cache.py), so the request's cached reads need no call of their own to the queue Redis.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncEngine

from wingman.db.models import UserTier
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.registry import RateLimits
from wingman.domain.catalog.services import config_value
from wingman.server.app_resources import Resources, scope_resources
from wingman.server.auth import AuthUser
from wingman.server.cache import ReadCache, remember_version, version_key
from wingman.server.ratelimit import RateDecision, RateLimiter, RateRule, refusal


@lru_cache(maxsize=64)
def rule_for(scope: str, notation: str) -> RateRule:
    """Rules are immutable: parse each (scope, allowance) pair once."""
    return RateRule.parse(scope, notation)


async def rate_limits(catalog: CatalogCache, engine: AsyncEngine) -> RateLimits:
    """The ``rate_limits`` config in force, through the process's catalog cache (a database
    session is opened only on a miss)."""
    return await config_value(catalog, engine, "rate_limits", RateLimits)


def caller_rule(limits: RateLimits, scope: Scope, resources: Resources) -> tuple[RateRule, str]:
    """The rule and identifier this request counts against."""
    user: Any = scope.get("user")
    if isinstance(user, AuthUser):
        allowance = limits.for_tier("api", premium=user.tier is UserTier.PREMIUM)
        return rule_for("api:user", allowance.notation), str(user.id)
    return rule_for("anon:ip", limits.anon.notation), resources.client_addresses.of(scope)


# Where a request's counted hit is kept, so that it is counted once whoever asks first (the
# cached session list answers before routing; see domain/chat/hot_list.py).
_DECIDED = "wingman.rate_decision"


async def request_decision(
    resources: Resources, scope: Scope
) -> tuple[RateRule, RateDecision | None]:
    """This request's hit against its caller's allowance, counted on the first call and
    remembered in the scope; the decision is None when Redis cannot be reached (fail open).
    A signed-in caller's read-cache version comes back with it (see the module docstring)."""
    decided: Any = scope.get(_DECIDED)
    if decided is None:
        limiter: RateLimiter = resources.rate_limiter
        limits = await rate_limits(resources.catalog, resources.alchemy.get_engine())
        rule, identifier = caller_rule(limits, scope, resources)
        user: Any = scope.get("user")
        cache: ReadCache = resources.read_cache
        reads = [version_key(user.id)] if isinstance(user, AuthUser) and cache.enabled else []
        decision, values = await limiter.check_reading(rule, identifier, reads)
        if values and values[0] is not None:
            remember_version(scope, user.id, values[0])
        decided = (rule, decision)
        scope[_DECIDED] = decided  # type: ignore[literal-required]
    rule_and_decision: tuple[RateRule, RateDecision | None] = decided
    return rule_and_decision


def budget_headers(decision: RateDecision) -> list[tuple[bytes, bytes]]:
    """The ``RateLimit-*`` headers of an allowed answer, as ASGI header pairs."""
    return [(k.lower().encode(), v.encode()) for k, v in decision.headers().items()]


class RequestLimits(ASGIMiddleware):
    """Counts each request against its caller's allowance; see the module docstring."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        resources = scope_resources(scope)
        if not resources.settings.server.rate_limits:
            await next_app(scope, receive, send)
            return
        rule, decision = await request_decision(resources, scope)
        if decision is None:
            await next_app(scope, receive, send)
            return
        if not decision.allowed:
            raise refusal(rule, decision)
        extra = budget_headers(decision)

        async def send_with_budget(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # A route's own refusal (chat, ai) already names its scope's budget.
                if not any(name.lower().startswith(b"ratelimit-") for name, _ in headers):
                    headers.extend(extra)
                message["headers"] = headers
            await send(message)

        await next_app(scope, receive, send_with_budget)
