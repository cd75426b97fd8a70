"""CPU and memory of the server processes under load, read from ``/proc``.

The roots are the stack's web and worker pids; Granian's workers are their children, so each
sample walks the process tree. CPU is the sum of user+system time across the tree (exited
children included), so a figure of 150 % means one and a half cores were busy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def process_tree(roots: list[int]) -> list[int]:
    seen: list[int] = []
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen or not Path(f"/proc/{pid}").exists():
            continue
        seen.append(pid)
        stack += _children(pid)
    return seen


def _cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its children that have exited (and were reaped by it), so a
    PostgreSQL backend that ends during the run still counts towards its postmaster."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17 of the whole line (11-14 after the name).
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and its whole process tree (0 when it is gone)."""
    return sum(_cpu_seconds(pid) for pid in process_tree([root]))


@dataclass
class ProcessSampler:
    roots: dict[str, int]
    peak_rss: dict[str, int] = field(default_factory=dict)
    _cpu_start: dict[str, float] = field(default_factory=dict)
    _cpu_end: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._cpu_start = {name: tree_cpu_seconds(pid) for name, pid in self.roots.items()}

    def sample(self) -> None:
        for name, root in self.roots.items():
            rss = sum(_rss_bytes(pid) for pid in process_tree([root]))
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)

    def stop(self) -> None:
        self._cpu_end = {name: tree_cpu_seconds(pid) for name, pid in self.roots.items()}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each tree used between :meth:`start` and :meth:`stop`."""
        return {
            name: self._cpu_end.get(name, 0) - self._cpu_start.get(name, 0) for name in self.roots
        }

    def report(self, seconds: float) -> dict[str, dict[str, float]]:
        return {
            name: {
                "cpu_percent": round(100 * used / seconds, 1),
                "peak_rss_mb": round(self.peak_rss.get(name, 0) / 2**20, 1),
            }
            for name, used in self.cpu_seconds().items()
        }
