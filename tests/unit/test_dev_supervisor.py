"""How `dev run` words an exit and spaces its restarts (the restarts themselves: e2e)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from wingman.devstack.processes import child_exit_status, pid_alive, wait_for
from wingman.devstack.supervisor import (
    MAX_DELAY_S,
    POLL_S,
    SETTLE_S,
    Supervisor,
    backoff,
    exit_reason,
)


def test_restart_delays_double_up_to_the_cap() -> None:
    assert [backoff(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff(100) == MAX_DELAY_S


def test_exit_reasons_name_the_signal() -> None:
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_reason(3) == "exited with status 3"
    assert exit_reason(None) == "stopped"


# Eight threads that keep running until the process is killed.
_THREADED = (
    "import threading, time\n"
    "def spin():\n"
    "    while True:\n"
    "        pass\n"
    "for _ in range(8):\n"
    "    threading.Thread(target=spin, daemon=True).start()\n"
    "print('up', flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_killed_multi_threaded_child_is_reported_killed_not_running() -> None:
    """As soon as the child looks dead (a zombie), its status is there: the supervisor said
    "stopped" instead of "killed by SIGKILL" for about half of such kills before."""
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", _THREADED], stdout=subprocess.PIPE)
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"up\n"
            os.kill(child.pid, signal.SIGKILL)
            # What the supervisor does: wait until the process looks gone, then ask how it ended.
            assert wait_for(lambda pid=child.pid: not pid_alive(pid), 10, interval=0.001)
            assert child_exit_status(child) == -signal.SIGKILL
        finally:
            child.kill()
            child.wait()


class _Exiting:
    """A stack whose one process is gone, its exit status collectable after ``settles`` asks
    (None before, as for a killed multi-threaded child whose threads are still exiting)."""

    def __init__(self, settles: int | None, started_here: bool = True) -> None:
        self.settles = settles
        self.asks = 0
        self.here = started_here
        self.restarted = 0

    def app_names(self) -> list[str]:
        return ["worker-ai"]

    def app_pid(self, name: str) -> int | None:
        return 4343 if self.restarted else None

    def exit_status(self, name: str) -> int | None:
        self.asks += 1
        if self.settles is not None and self.asks > self.settles:
            return -signal.SIGKILL
        return None

    def started_here(self, name: str) -> bool:
        return self.here

    def restart_app(self, name: str) -> int:
        self.restarted += 1
        return 4343

    def log_event(self, name: str, event: str, **fields: object) -> None:
        pass

    def stopped_services(self) -> list[str]:
        return []


def _supervise(stack: _Exiting, seconds: float) -> list[tuple[float, str]]:
    """What the supervisor says in ``seconds`` of polls, with when it said it."""
    said: list[tuple[float, str]] = []
    now = 0.0
    supervisor = Supervisor(stack, lambda line: said.append((now, line)), clock=lambda: now)
    while now < seconds:
        now += POLL_S
        supervisor.check()
    return said


def test_a_child_whose_status_comes_late_is_still_reported_killed() -> None:
    """The status of a killed AI worker on a loaded machine came after the 2 s that
    `child_exit_status` waits; the report waits for it rather than say "stopped"."""
    said = _supervise(_Exiting(settles=6), seconds=10)
    assert [line for _, line in said] == [
        "worker-ai: killed by SIGKILL (pid None); restarting in 1 s",
        "worker-ai: restarted (pid 4343, restart 1 of this run)",
    ]
    assert said[0][0] == 7 * POLL_S


def test_a_status_that_never_comes_is_said_stopped_after_the_settle_time() -> None:
    said = _supervise(_Exiting(settles=None), seconds=SETTLE_S + 5)
    assert said[0][1] == "worker-ai: stopped (pid None); restarting in 1 s"
    assert said[0][0] >= SETTLE_S
    assert said[1][1].startswith("worker-ai: restarted")


def test_a_process_not_started_here_is_said_stopped_at_once() -> None:
    said = _supervise(_Exiting(settles=None, started_here=False), seconds=3)
    assert said[0] == (POLL_S, "worker-ai: stopped (pid None); restarting in 1 s")
