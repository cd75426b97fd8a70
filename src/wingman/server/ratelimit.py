"""Rate limits shared by every web worker: a moving window per (scope, identifier) in Redis.

Built on the ``limits`` package and its async Redis storage (Lua scripts, so a check-and-count is
one atomic step however many processes serve requests). A :class:`RateRule` names a scope
(``"otp:ip"``, later ``"api:user"``, ``"chat:user"``) and an allowance such as ``5/minute``; the
caller supplies the identifier (an IP, a user id, a destination hash). Nothing here knows about
accounts or tiers, so later areas add scopes without touching this module.

The storage shares the queue-role Redis client's connection pool: limits are shared state that
must survive a cache flush, and the cache role evicts keys under memory pressure.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from wingman.server.errors import Problem

KEY_PREFIX = "wingman:ratelimit"


@dataclass(frozen=True, slots=True)
class RateRule:
    """An allowance for one scope, e.g. ``RateRule.parse("otp:ip", "5/minute")``."""

    scope: str
    item: RateLimitItem

    @classmethod
    def parse(cls, scope: str, allowance: str) -> RateRule:
        """``allowance`` in the ``limits`` notation: ``"5/minute"``, ``"10000/hour"``, ..."""
        return cls(scope, parse(allowance))

    @classmethod
    def per_minute(cls, scope: str, amount: int) -> RateRule:
        return cls.parse(scope, f"{amount}/minute")


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Outcome of one hit: whether it was allowed and what the client may be told."""

    allowed: bool
    limit: int
    remaining: int
    # Seconds until the oldest hit leaves the window (so a refused client may try again).
    reset_after: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers (IETF draft) plus ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_after)
        return headers


def seconds_until(reset_at: float, now: float) -> int:
    """Whole seconds from ``now`` until ``reset_at``; at least 1 (``Retry-After: 0`` invites a
    tight retry loop)."""
    return max(1, math.ceil(reset_at - now))


class RateLimiter:
    """Moving-window limiter on Redis; one instance per process, safe to share between tasks."""

    def __init__(self, storage: RedisStorage) -> None:
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)

    @classmethod
    def on_redis(cls, client: Redis, url: str) -> RateLimiter:
        """A limiter that borrows ``client``'s connection pool (``url`` names the same server)."""
        storage = RedisStorage(
            "async+" + url,
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            connection_pool=client.connection_pool,  # type: ignore[arg-type]
        )
        return cls(storage)

    async def hit(self, rule: RateRule, identifier: str) -> RateDecision:
        """Count one request against ``rule`` for ``identifier``, unless that would exceed it."""
        allowed = await self._strategy.hit(rule.item, rule.scope, identifier)
        reset_at, remaining = await self._strategy.get_window_stats(
            rule.item, rule.scope, identifier
        )
        return RateDecision(
            allowed=allowed,
            limit=rule.item.amount,
            remaining=max(0, remaining),
            reset_after=seconds_until(reset_at, time.time()),
        )

    async def enforce(self, *checks: tuple[RateRule, str]) -> RateDecision | None:
        """Hit each (rule, identifier) in order; raise a 429 problem at the first refusal.

        Later rules are not counted once one refuses, so a throttled client does not also use up
        allowances it never got to spend. Returns the last decision (None without checks).
        """
        decision: RateDecision | None = None
        for rule, identifier in checks:
            decision = await self.hit(rule, identifier)
            if not decision.allowed:
                raise Problem(
                    429,
                    "rate-limited",
                    f"Too many requests; try again in {decision.reset_after} s.",
                    extra={"scope": rule.scope, "retry_after": decision.reset_after},
                    headers=decision.headers(),
                )
        return decision

    async def clear(self, rule: RateRule, identifier: str) -> None:
        """Forget the hits of ``identifier`` under ``rule`` (admin unblock, tests)."""
        await self._strategy.clear(rule.item, rule.scope, identifier)
