"""Free space where Wingman keeps its data: one verdict, for ``wingmanctl status`` and ``doctor``.

PostgreSQL stops writing when its disk is full, and the queue Redis's AOF with it, so the
warning comes early: below 15 % free, or below 2 GiB free whatever the share (a large disk's
15 % is plenty; a small disk's is gone in a day of busy chat). Below 5 % free it fails: free
space now. The alert rules of the built-in monitoring (appliance/monitoring/alerts.yml,
HostDiskFilling and HostDiskFull) use the same figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

DiskState = Literal["ok", "warn", "fail"]
WARN_SHARE = 0.15
WARN_FREE_BYTES = 2 * 2**30
FAIL_SHARE = 0.05
FIX = "free space: lower backup.keep, move backups elsewhere, or grow the data disk"


class DiskSpace(msgspec.Struct, frozen=True, kw_only=True):
    """The file system holding ``path``: its size, what an unprivileged user can still write."""

    path: str
    total: int
    free: int
    state: DiskState

    @property
    def share(self) -> float:
        return self.free / self.total if self.total else 0.0

    def describe(self) -> str:
        return f"{gib(self.free)} free of {gib(self.total)} ({self.share:.0%})"


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def verdict(free: int, total: int) -> DiskState:
    """``fail`` below 5 % free; ``warn`` below 15 % or 2 GiB free; else ``ok``."""
    share = free / total if total else 0.0
    if share < FAIL_SHARE:
        return "fail"
    if share < WARN_SHARE or free < WARN_FREE_BYTES:
        return "warn"
    return "ok"


def measure(path: Path) -> DiskSpace:
    """The file system of ``path``, or of its nearest existing parent (a folder not made yet)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    fs = os.statvfs(existing)
    # f_bavail, not f_bfree: the blocks reserved for root are not there for PostgreSQL or Redis.
    total, free = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
    return DiskSpace(path=str(path), total=total, free=free, state=verdict(free, total))
