"""Keeping the development stack's web and worker processes running, as systemd does.

``wingmanctl dev run`` stays in the foreground and calls :meth:`Supervisor.run`: every half second
it looks at each web and worker process, and one that is gone (crashed, killed, OOM) is started
again after a back-off (1 s, then doubling up to 30 s while it keeps dying within a minute of its
start; a process that ran for a minute starts the count again). Every exit and restart is said
on the terminal and written to the process's own log, so the cause sits next to the crash.

Before a process is started again, whatever is left of its process group is killed: a web
server killed with -9 leaves Granian's worker processes holding the port.

PostgreSQL and Redis are not restarted here (the appliance restarts them with their units); a
warning says when one stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec

from wingman.devstack.processes import wait_for

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
# A process that ran this long before it stopped is started again after the first delay.
STABLE_AFTER_S = 60.0
POLL_S = 0.5
# How long a child of ours that looks dead may take to hand over its exit status. A killed
# multi-threaded process is a zombie before all its threads are gone, and only then can its
# status be collected: on a loaded machine an AI worker killed with -9 took more than the
# 2 s that `child_exit_status` waits. Its report (and restart) waits a few polls instead of
# saying "stopped".
SETTLE_S = 15.0


def exit_reason(status: int | None) -> str:
    if status is None:  # started by an earlier `dev up`: not our child, its status unknown
        return "stopped"
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
        return f"killed by signal {-status}"
    return f"exited with status {status}"


def backoff(failures: int) -> float:
    """Seconds before restart number ``failures + 1`` of a process that keeps dying."""
    return float(min(MAX_DELAY_S, FIRST_DELAY_S * 2**failures))


@dataclass(slots=True)
class Watch:
    """What the supervisor knows about one process."""

    pid: int | None
    started: float
    failures: int = 0
    restart_at: float | None = None
    restarts: int = 0
    gone_since: float | None = None


class Supervised(Protocol):
    """What :class:`Supervisor` needs from the stack (``DevStack`` provides it)."""

    def app_names(self) -> list[str]: ...

    def app_pid(self, name: str) -> int | None: ...

    def exit_status(self, name: str) -> int | None: ...

    def started_here(self, name: str) -> bool: ...

    def restart_app(self, name: str) -> int: ...

    def log_event(self, name: str, event: str, **fields: object) -> None: ...

    def stopped_services(self) -> list[str]: ...


class Supervisor:
    def __init__(
        self,
        stack: Supervised,
        report: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stack = stack
        self.report = report
        self.clock = clock
        now = clock()
        self.watches = {name: Watch(stack.app_pid(name), now) for name in stack.app_names()}
        self._warned: set[str] = set()

    def run(self, stop: threading.Event) -> None:
        """Check every ``POLL_S`` until ``stop`` is set."""
        while not stop.wait(POLL_S):
            self.check()

    def check(self) -> None:
        now = self.clock()
        for name, watch in self.watches.items():
            pid = self.stack.app_pid(name)
            if pid is not None:
                if pid != watch.pid:  # started by someone else (`wingmanctl tune --apply`)
                    watch.pid, watch.started, watch.restart_at = pid, now, None
                continue
            if watch.restart_at is None:
                self._schedule(name, watch, now)
            elif now >= watch.restart_at:
                self._restart(name, watch, now)
        self._warn_services()

    def _schedule(self, name: str, watch: Watch, now: float) -> None:
        status = self.stack.exit_status(name)
        if status is None and self.stack.started_here(name):
            if watch.gone_since is None:
                watch.gone_since = now
            if now - watch.gone_since < SETTLE_S:
                return  # its threads are still exiting: ask again at the next poll
        watch.gone_since = None
        reason = exit_reason(status)
        if now - watch.started >= STABLE_AFTER_S:
            watch.failures = 0
        delay = backoff(watch.failures)
        watch.failures += 1
        watch.restart_at = now + delay
        self.report(f"{name}: {reason} (pid {watch.pid}); restarting in {delay:.0f} s")
        self.stack.log_event(
            name, "dev_process_exited", pid=watch.pid, reason=reason, restart_in_s=delay
        )

    def _restart(self, name: str, watch: Watch, now: float) -> None:
        pid = self.stack.restart_app(name)
        watch.pid, watch.started, watch.restart_at = pid, now, None
        watch.restarts += 1
        self.report(f"{name}: restarted (pid {pid}, restart {watch.restarts} of this run)")
        self.stack.log_event(name, "dev_process_restarted", pid=pid, restarts=watch.restarts)

    def _warn_services(self) -> None:
        stopped = set(self.stack.stopped_services())
        for name in sorted(stopped - self._warned):
            self.report(f"warning: {name} stopped unexpectedly; it is not restarted here")
        for name in sorted(self._warned - stopped):
            self.report(f"{name}: running again")
        self._warned = stopped


def kill_leftovers(pgid: int, timeout: float = 5.0) -> None:
    """SIGKILL what remains of the process group ``pgid`` and wait until it is empty."""

    def gone() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    wait_for(gone, timeout)


def log_line(event: str, **fields: object) -> bytes:
    """One JSON line like the processes' own structured logs."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return msgspec.json.encode({"event": event, **fields, "timestamp": stamp}) + b"\n"
