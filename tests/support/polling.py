"""Waiting for a condition instead of sleeping for a guessed time.

A fixed sleep is too short on a busy host and wasted time on an idle one; polling returns as
soon as the condition holds and fails with a message once its deadline passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], within: float, what: str, every: float = 0.05
) -> T:
    """Await ``check()`` until it returns something truthy (at most ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)


async def until(condition: Callable[[], bool], within: float, every: float = 0.02) -> bool:
    """Whether ``condition()`` came true within ``within`` seconds (polled every ``every``)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(every)
    return False
