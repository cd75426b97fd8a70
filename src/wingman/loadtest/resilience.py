"""Resilient mode of the simulated users: they ride out an outage instead of counting errors.

With ``Resilience`` on ``Shared``, a request that fails to connect or is answered 503 is tried
again after a short, bounded wait (the answer's Retry-After when it gives one), through the same
base URL, and a dropped socket is reconnected and resumed from the last event id the user saw
(DESIGN section 6). What the outage looked like from the users' side is counted here: the 503s
with and without Retry-After, the connection errors, the reconnects and resumes, and any other
5xx (a server error, never expected). Posts carry an idempotency key in this mode, so a retried
post never stores a second message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

# The wait between tries: the first, the longest, and Retry-After's ceiling.
FIRST_WAIT_S = 0.1
LONGEST_WAIT_S = 2.0
# Past this a request is given up and counted as an error, as in the default mode.
GIVE_UP_S = 45.0


def retry_after(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds (the delay form only), None when absent or unusable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def backoff(attempt: int) -> float:
    return float(min(LONGEST_WAIT_S, FIRST_WAIT_S * 2**attempt))


@dataclass
class Resilience:
    """The counts of one run in resilient mode, shared by its users."""

    stop: asyncio.Event
    give_up_s: float = GIVE_UP_S
    unavailable_with_retry_after: int = 0
    unavailable_without_retry_after: int = 0
    connection_errors: int = 0
    reconnects: int = 0
    resumes: int = 0
    resyncs: int = 0
    # 5xx answers other than 503, by status.
    server_errors: Counter[int] = field(default_factory=Counter)
    # From each socket's drop to its reconnection.
    reconnect_s: list[float] = field(default_factory=list)

    def deadline(self) -> float:
        return time.monotonic() + self.give_up_s

    async def pause(self, seconds: float, deadline: float) -> bool:
        """Wait ``seconds`` (bounded), unless the run stops or the deadline passes first;
        whether to try again."""
        seconds = min(seconds, LONGEST_WAIT_S, deadline - time.monotonic())
        if seconds <= 0 or self.stop.is_set():
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return not self.stop.is_set()

    async def after_connection_error(self, attempt: int, deadline: float) -> bool:
        self.connection_errors += 1
        return await self.pause(backoff(attempt), deadline)

    async def after_unavailable(
        self, response: httpx.Response, attempt: int, deadline: float
    ) -> bool:
        wait = retry_after(response)
        if wait is None:
            self.unavailable_without_retry_after += 1
            wait = backoff(attempt)
        else:
            self.unavailable_with_retry_after += 1
        return await self.pause(wait, deadline)

    def reconnected(self, seconds: float) -> None:
        self.reconnects += 1
        self.reconnect_s.append(seconds)

    def answered(self, status: int) -> None:
        if status >= 500 and status != 503:
            self.server_errors[status] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "unavailable_with_retry_after": self.unavailable_with_retry_after,
            "unavailable_without_retry_after": self.unavailable_without_retry_after,
            "connection_errors": self.connection_errors,
            "reconnects": self.reconnects,
            "reconnect_max_s": round(max(self.reconnect_s, default=0.0), 3),
            "resumes": self.resumes,
            "resyncs": self.resyncs,
            "server_errors": {str(k): v for k, v in sorted(self.server_errors.items())},
        }


def reply_counts(posted: list[str], completions: dict[str, int]) -> dict[str, Any]:
    """Per accepted message whether its reply arrived: once, never, or more than once."""
    never = [ai_id for ai_id in posted if completions.get(ai_id, 0) == 0]
    twice = [ai_id for ai_id in posted if completions.get(ai_id, 0) > 1]
    return {
        "posted": len(posted),
        "arrived_once": len(posted) - len(never) - len(twice),
        "never_arrived": never,
        "arrived_twice": twice,
    }
