"""Rate limits shared by every web worker: a moving window per (scope, identifier) in Redis.

Built on the ``limits`` package and its async Redis storage (Lua scripts, so a check-and-count is
one atomic step however many processes serve requests). A :class:`RateRule` names a scope
(``"otp:ip"``, ``"api:user"``, ``"chat:user"``) and an allowance such as ``5/minute``; the
caller supplies the identifier (an IP, a user id, a destination hash). Nothing here knows about
accounts or tiers, so later areas add scopes without touching this module.

The storage shares the queue-role Redis client's connection pool: limits are shared state that
must survive a cache flush, and the cache role evicts keys under memory pressure.

When Redis cannot be reached a check fails open (the request goes on uncounted) unless the caller
asks for ``fail_closed`` (sign-in codes: sending them costs money and invites abuse), which answers
503. Either way the failure is counted in ``wingman_rate_limiter_errors_total{scope}`` and logged
as a warning at most once per :data:`WARNING_INTERVAL` seconds per scope, so an outage does not
write one line per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wingman.server.errors import Problem
from wingman.server.metrics import RATE_LIMITED, RATE_LIMITER_ERRORS

log = structlog.get_logger(__name__)

KEY_PREFIX = "wingman:ratelimit"
WARNING_INTERVAL = 10.0
# What an unreachable or failing Redis raises through the ``limits`` storage.
STORE_ERRORS = (StorageError, RedisError, OSError)


@dataclass(frozen=True, slots=True)
class RateRule:
    """An allowance for one scope, e.g. ``RateRule.parse("otp:ip", "5/minute")``."""

    scope: str
    item: RateLimitItem

    @classmethod
    def parse(cls, scope: str, allowance: str) -> RateRule:
        """``allowance`` in the ``limits`` notation: ``"5/minute"``, ``"10000/hour"``, ..."""
        return cls(scope, parse(allowance))


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


class WarningGate:
    """Lets a repeated warning through at most once per ``interval`` seconds per key, and says
    how many were held back since the last one."""

    def __init__(
        self, interval: float = WARNING_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def open(self, key: str) -> int | None:
        """The number of warnings held back since the last one let through, or None to hold
        this one back too."""
        now = self._clock()
        if now < self._next.get(key, float("-inf")):
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._next[key] = now + self.interval
        return self._held.pop(key, 0)


def refusal(rule: RateRule, decision: RateDecision) -> Problem:
    """The 429 problem for a refused hit."""
    return Problem(
        429,
        "rate-limited",
        f"Too many requests; try again in {decision.reset_after} s.",
        extra={"scope": rule.scope, "retry_after": decision.reset_after},
        headers=decision.headers(),
    )


class RateLimiter:
    """Moving-window limiter on Redis; one instance per process, safe to share between tasks."""

    def __init__(self, storage: RedisStorage) -> None:
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._warnings = WarningGate()

    @classmethod
    def on_redis(cls, client: Redis, url: str) -> RateLimiter:
        """A limiter that borrows ``client``'s connection pool (``url`` names the same server)."""
        storage = RedisStorage(
            "async+" + url,
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            connection_pool=client.connection_pool,  # type: ignore[arg-type]
            wrap_exceptions=True,
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

    async def check(
        self, rule: RateRule, identifier: str, *, fail_closed: bool = False
    ) -> RateDecision | None:
        """:meth:`hit`, counting refusals and store failures in the metrics.

        None when the store cannot be reached (fail open); with ``fail_closed`` a 503 problem is
        raised instead.
        """
        try:
            decision = await self.hit(rule, identifier)
        except STORE_ERRORS as exc:
            self._store_failed(rule.scope, exc)
            if fail_closed:
                raise Problem(
                    503,
                    "rate-limiter-unavailable",
                    "This request cannot be checked against its allowance right now; try again"
                    " shortly.",
                    extra={"scope": rule.scope},
                    headers={"Retry-After": "5"},
                ) from None
            return None
        if not decision.allowed:
            RATE_LIMITED.labels(scope=rule.scope).inc()
        return decision

    async def enforce(
        self, *checks: tuple[RateRule, str], fail_closed: bool = False
    ) -> RateDecision | None:
        """Hit each (rule, identifier) in order; raise a 429 problem at the first refusal.

        Later rules are not counted once one refuses, so a throttled client does not also use up
        allowances it never got to spend. Returns the last decision (None without checks, or when
        the store could not be reached and ``fail_closed`` is off).
        """
        decision: RateDecision | None = None
        for rule, identifier in checks:
            decision = await self.check(rule, identifier, fail_closed=fail_closed)
            if decision is None:
                return None
            if not decision.allowed:
                raise refusal(rule, decision)
        return decision

    def _store_failed(self, scope: str, exc: BaseException) -> None:
        RATE_LIMITER_ERRORS.labels(scope=scope).inc()
        held = self._warnings.open(scope)
        if held is not None:
            cause = exc.storage_error if isinstance(exc, StorageError) else exc
            log.warning(
                "rate_limiter_unavailable",
                scope=scope,
                error=type(cause).__name__,
                suppressed=held,
            )

    async def clear(self, rule: RateRule, identifier: str) -> None:
        """Forget the hits of ``identifier`` under ``rule`` (admin unblock, tests)."""
        await self._strategy.clear(rule.item, rule.scope, identifier)
