"""Several worker processes for one queue, run by ``wingmanctl worker`` (``processes`` > 1).

One SAQ worker is one process with one event loop; ``worker.queues.<queue>.processes`` asks for
more of them (set by ``wingmanctl tune`` from the host's cores and memory). The appliance runs one
service per queue (``wingman-worker@<queue>``), so the command the service starts supervises the
processes itself:

- it starts ``processes`` children, each ``wingmanctl worker --queue <queue> --processes 1``
  (a plain single worker, with its own database engine, Redis clients and metrics folder);
- a child that exits while nothing asked it to is started again after a short delay; when
  children keep failing (``MAX_RESTARTS`` within ``RESTART_WINDOW_S``) the supervisor stops the
  rest and exits 1, leaving the next step to the service manager (``Restart=on-failure``);
- SIGTERM or SIGINT is passed on to every child as SIGTERM: each stops taking jobs and lets its
  running ones finish or requeue within ``worker.shutdown_grace``. The supervisor exits after the
  last child, so the service manager's stop (``KillMode=mixed``: SIGTERM to the main process
  only) waits for all of them. Children still running ``stop_timeout`` seconds after the request
  are killed.

This module imports nothing heavy: the supervising process holds no connection and no job.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import FrameType

import structlog

log = structlog.get_logger(__name__)

# A child that exits on its own is started again after this many seconds.
RESTART_DELAY_S = 2.0
# More restarts than this within the window: something is wrong with every child; give up.
MAX_RESTARTS = 10
RESTART_WINDOW_S = 60.0
POLL_S = 0.1
# Exit statuses of a child that was asked to stop: a clean exit, or killed by the stop signal
# before its event loop installed its handlers.
_STOPPED_STATUSES = {0, -signal.SIGTERM, -signal.SIGINT}
_PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: a function for a new child that has it get SIGTERM when the supervisor dies.

    Looked up here, in the parent: between fork and exec the child only calls ``prctl``.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None

    def set_signal() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_signal


class Supervisor:
    """Keeps ``processes`` copies of ``command`` running until asked to stop."""

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        stop_timeout: float,
        restart_delay: float = RESTART_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.command = list(command)
        self.processes = processes
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.clock = clock
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        # Slot -> when to start its replacement.
        self.pending: dict[int, float] = {}
        self.restarts: deque[float] = deque()
        self.stop_requested_at: float | None = None
        self.failed = False
        self._preexec = _parent_death_signal()

    def _start(self, slot: int) -> None:
        # A killed supervisor orphans no worker.
        child = subprocess.Popen(self.command, preexec_fn=self._preexec)  # noqa: PLW1509
        self.children[slot] = child
        log.info("worker_process_started", slot=slot, pid=child.pid)

    def request_stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """Signal handler: pass SIGTERM on to every running child (once)."""
        if self.stop_requested_at is not None:
            return
        self.stop_requested_at = self.clock()
        self.pending.clear()
        log.info("worker_processes_stopping", signal=signal.Signals(signum).name)
        for child in self.children.values():
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    def _reap(self) -> None:
        now = self.clock()
        for slot, child in list(self.children.items()):
            status = child.poll()
            if status is None:
                continue
            del self.children[slot]
            if self.stop_requested_at is not None:
                if status not in _STOPPED_STATUSES:
                    self.failed = True
                    log.warning(
                        "worker_process_failed_on_stop", slot=slot, pid=child.pid, status=status
                    )
                continue
            self.restarts.append(now)
            while self.restarts and now - self.restarts[0] > RESTART_WINDOW_S:
                self.restarts.popleft()
            if len(self.restarts) > MAX_RESTARTS:
                log.error(
                    "worker_processes_keep_failing",
                    restarts=len(self.restarts),
                    window_s=RESTART_WINDOW_S,
                )
                self.failed = True
                self.request_stop()
                continue
            log.warning("worker_process_exited", slot=slot, pid=child.pid, status=status)
            self.pending[slot] = now + self.restart_delay

    def run(self) -> int:
        """Start the children, keep them running, stop them on SIGTERM/SIGINT; the exit status."""
        previous = {
            signum: signal.signal(signum, self.request_stop)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for slot in range(self.processes):
                if self.stop_requested_at is None:
                    self._start(slot)
            log.info(
                "worker_processes_running",
                processes=self.processes,
                pids=[child.pid for child in self.children.values()],
            )
            while self.children or (self.pending and self.stop_requested_at is None):
                self._reap()
                now = self.clock()
                for slot, due in list(self.pending.items()):
                    if due <= now and self.stop_requested_at is None:
                        del self.pending[slot]
                        self._start(slot)
                if (
                    self.stop_requested_at is not None
                    and now - self.stop_requested_at > self.stop_timeout
                ):
                    for slot, child in self.children.items():
                        if child.poll() is None:
                            log.warning("worker_process_killed", slot=slot, pid=child.pid)
                            child.kill()
                    self.failed = True
                    self.stop_requested_at = now  # another full timeout before killing again
                time.sleep(POLL_S)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        log.info("worker_processes_stopped", failed=self.failed)
        return 1 if self.failed else 0


def supervise(command: Sequence[str], processes: int, *, stop_timeout: float) -> int:
    """Run ``processes`` copies of ``command`` until SIGTERM/SIGINT; 0 when all stopped cleanly."""
    return Supervisor(command, processes, stop_timeout=stop_timeout).run()
