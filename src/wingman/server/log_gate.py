"""Repeated warnings, let through at most once per interval (an outage must not write one line
per request)."""

from __future__ import annotations

import time
from collections.abc import Callable

WARNING_INTERVAL = 10.0


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
