"""Rate limits shared by every web worker: a moving window per (scope, identifier) in Redis.

A :class:`RateRule` names a scope
(``"otp:ip"``, ``"api:user"``, ``"chat:user"``) and an allowance such as ``5/minute``; the
caller supplies the identifier (an IP, a user id, a destination hash). Nothing here knows about
accounts or tiers, so later areas add scopes without touching this module.

**The window** is the ``limits`` package's moving window, kept exactly as it lays it out (one
Redis list of hit timestamps per key, newest first, trimmed to the allowance, key names from
``limits``' items under :data:`KEY_PREFIX`), but counted by our own Lua script,
:data:`_HIT_ALL`. ``limits``' storage needs two round trips per check (``acquire_entry``, then
``get_moving_window`` for the budget headers) and one check per scope; the script checks every
scope of a request, counts the hit in all of them only if all allow it, and returns each window's
count and oldest hit, in one round trip. On the hottest route (a cached read) that halved the
limiter's share of a request (bench: scripts/bench_micro.py, "(b)" with and without the limiter).
Parsing allowances stays with ``limits``.

The storage shares the queue-role Redis client's connection pool: limits are shared state that
must survive a cache flush, and the cache role evicts keys under memory pressure.

**Reads along the way.** A caller may pass plain keys to read in the same script
(:meth:`RateLimiter.check_reading`): every signed-in request reads its user's read-cache version
this way (server/cache.py), so the cached read after it needs no call of its own to this Redis.

When Redis cannot be reached a check fails open (the request goes on uncounted) unless the caller
asks for ``fail_closed`` (sign-in codes: sending them costs money and invites abuse), which answers
503. Either way the failure is counted in ``wingman_rate_limiter_errors_total{scope}`` and logged
as a warning at most once per ten seconds per scope (server/log_gate.py), so an outage does not
write one line per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import structlog
from limits import RateLimitItem, parse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wingman.server.errors import Problem
from wingman.server.log_gate import WarningGate
from wingman.server.metrics import RATE_LIMITED, RATE_LIMITER_ERRORS
from wingman.server.redis import RedisClients
from wingman.server.redis_mux import RedisMux

log = structlog.get_logger(__name__)

KEY_PREFIX = "wingman:ratelimit"
# What an unreachable or failing Redis raises.
STORE_ERRORS = (RedisError, OSError)

# KEYS: one window list per scope, then any plain keys to read. ARGV[1]: now (seconds, float); then
# per window its allowance and length in seconds (so the windows are the first (#ARGV - 1) / 2
# keys). The lists are newest first (limits' layout). Each check first drops the
# hits that have left its window from the old end, so what remains is exactly the window: its
# length is the count and its last entry the oldest hit. Every hit is pushed once and dropped
# once, so a check costs a few commands whatever the allowance (the earlier binary search over
# the list cost ~70 us of Redis CPU per request, measured with INFO commandstats). Refuses when a
# window already holds its allowance; otherwise pushes ``now`` onto every list. Returns {index of
# the refusing key or 0, then per window: hits in it, oldest of them (as a string: Lua numbers
# come back as integers), then the value of each key to read (nil when missing)}.
_HIT_ALL = """
local now = tonumber(ARGV[1])
local windows = (#ARGV - 1) / 2
local refused = 0
local counts = {}
for i = 1, windows do
    local since = now - tonumber(ARGV[2 * i + 1])
    local oldest = redis.call('LINDEX', KEYS[i], -1)
    while oldest and tonumber(oldest) < since do
        redis.call('RPOP', KEYS[i])
        oldest = redis.call('LINDEX', KEYS[i], -1)
    end
    counts[i] = redis.call('LLEN', KEYS[i])
    if refused == 0 and counts[i] >= tonumber(ARGV[2 * i]) then
        refused = i
    end
end
local out = {refused}
for i = 1, windows do
    if refused == 0 then
        redis.call('LPUSH', KEYS[i], ARGV[1])
        redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]))
        counts[i] = counts[i] + 1
    end
    out[#out + 1] = counts[i]
    out[#out + 1] = redis.call('LINDEX', KEYS[i], -1) or ARGV[1]
end
for i = windows + 1, #KEYS do
    out[#out + 1] = redis.call('GET', KEYS[i])
end
return out
"""


@dataclass(frozen=True, slots=True)
class RateRule:
    """An allowance for one scope, e.g. ``RateRule.parse("otp:ip", "5/minute")``."""

    scope: str
    item: RateLimitItem

    @classmethod
    def parse(cls, scope: str, allowance: str) -> RateRule:
        """``allowance`` in the ``limits`` notation: ``"5/minute"``, ``"10000/hour"``, ..."""
        return _parsed(scope, allowance)


@lru_cache(maxsize=1024)
def _parsed(scope: str, allowance: str) -> RateRule:
    """Rules are built per request from the configured notation (a message post builds two);
    ``limits``' parser is a few regular expressions, a tenth of the post's quota check."""
    return RateRule(scope, parse(allowance))


@lru_cache(maxsize=16_384)
def _window_key(rule: RateRule, identifier: str) -> str:
    """The Redis key of a window (``limits``' layout; remembered, as a signed-in caller asks for
    the same one with every request and building it is a few microseconds)."""
    return f"{KEY_PREFIX}:{rule.item.key_for(rule.scope, identifier)}"


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

    def __init__(
        self, client: Redis, mux: RedisMux, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._mux = mux
        # Seconds since the epoch; every process must read the same clock (tests pass their own).
        self._clock = clock
        self._warnings = WarningGate()

    @classmethod
    def on_redis(cls, clients: RedisClients) -> RateLimiter:
        """A limiter on the queue-role Redis (limits must survive a cache flush): the per-request
        script through the pipelined connection, the rest through redis-py."""
        return cls(clients.queue, clients.queue_mux)

    @staticmethod
    def key(rule: RateRule, identifier: str) -> str:
        return _window_key(rule, identifier)

    async def hit_all(
        self, checks: Sequence[tuple[RateRule, str]]
    ) -> tuple[int | None, list[RateDecision]]:
        """Count one request against every (rule, identifier), all or none: if any window is
        full, nothing is counted. Returns the index of the first full window (None when the hit
        was counted) and each window's decision; every decision says ``allowed`` only when the
        hit was counted."""
        refused, decisions, _ = await self.hit_all_reading(checks, ())
        return refused, decisions

    async def hit_all_reading(
        self, checks: Sequence[tuple[RateRule, str]], reads: Sequence[str]
    ) -> tuple[int | None, list[RateDecision], list[bytes | None]]:
        """:meth:`hit_all`, also returning the values of the plain keys ``reads`` (None where
        missing), read in the same script."""
        now = self._clock()
        args: list[float | int] = [now]
        for rule, _ in checks:
            args += [rule.item.amount, rule.item.get_expiry()]
        keys = [self.key(*check) for check in checks]
        reply = await self._mux.evalsha(_HIT_ALL, [*keys, *reads], args)
        refused = int(reply[0]) - 1
        decisions = []
        for index, (rule, _) in enumerate(checks):
            count, oldest = int(reply[1 + 2 * index]), float(reply[2 + 2 * index])
            decisions.append(
                RateDecision(
                    allowed=refused < 0,
                    limit=rule.item.amount,
                    remaining=max(0, rule.item.amount - count),
                    reset_after=seconds_until(oldest + rule.item.get_expiry(), now),
                )
            )
        values = list(reply[1 + 2 * len(checks) :])
        return (None if refused < 0 else refused), decisions, values

    async def hit(self, rule: RateRule, identifier: str) -> RateDecision:
        """Count one request against ``rule`` for ``identifier``, unless that would exceed it."""
        _, (decision,) = await self.hit_all([(rule, identifier)])
        return decision

    async def check(
        self, rule: RateRule, identifier: str, *, fail_closed: bool = False
    ) -> RateDecision | None:
        """:meth:`hit`, counting refusals and store failures in the metrics.

        None when the store cannot be reached (fail open); with ``fail_closed`` a 503 problem is
        raised instead.
        """
        return await self.enforce((rule, identifier), fail_closed=fail_closed, raise_refusal=False)

    async def check_reading(
        self, rule: RateRule, identifier: str, reads: Sequence[str]
    ) -> tuple[RateDecision | None, list[bytes | None]]:
        """:meth:`check` (failing open), also reading the plain keys ``reads`` in the same
        script: their values, None where missing, or no values when the store failed."""
        return await self._enforce(((rule, identifier),), reads, False, raise_refusal=False)

    async def enforce(
        self,
        *checks: tuple[RateRule, str],
        fail_closed: bool = False,
        raise_refusal: bool = True,
    ) -> RateDecision | None:
        """Hit every (rule, identifier) at once (:meth:`hit_all`); raise a 429 problem naming
        the first full window.

        Nothing is counted when one refuses, so a throttled client does not also use up
        allowances it never got to spend. Returns the decision of the last check, or of the
        refusing one with ``raise_refusal`` off (None without checks, or when the store could not
        be reached and ``fail_closed`` is off).
        """
        decision, _ = await self._enforce(checks, (), fail_closed, raise_refusal=raise_refusal)
        return decision

    async def _enforce(
        self,
        checks: Sequence[tuple[RateRule, str]],
        reads: Sequence[str],
        fail_closed: bool,
        *,
        raise_refusal: bool,
    ) -> tuple[RateDecision | None, list[bytes | None]]:
        if not checks:
            return None, []
        try:
            refused, decisions, values = await self.hit_all_reading(checks, reads)
        except STORE_ERRORS as exc:
            scope = ",".join(rule.scope for rule, _ in checks)
            self._store_failed(scope, exc)
            if fail_closed:
                raise Problem(
                    503,
                    "rate-limiter-unavailable",
                    "This request cannot be checked against its allowance right now; try again"
                    " shortly.",
                    extra={"scope": scope},
                    headers={"Retry-After": "5"},
                ) from None
            return None, []
        if refused is None:
            return decisions[-1], values
        rule, decision = checks[refused][0], decisions[refused]
        RATE_LIMITED.labels(scope=rule.scope).inc()
        if raise_refusal:
            raise refusal(rule, decision)
        return decision, values

    def _store_failed(self, scope: str, exc: BaseException) -> None:
        RATE_LIMITER_ERRORS.labels(scope=scope).inc()
        held = self._warnings.open(scope)
        if held is not None:
            log.warning(
                "rate_limiter_unavailable",
                scope=scope,
                error=type(exc).__name__,
                suppressed=held,
            )

    async def clear(self, rule: RateRule, identifier: str) -> None:
        """Forget the hits of ``identifier`` under ``rule`` (admin unblock, tests)."""
        await self._client.delete(self.key(rule, identifier))
