"""How `dev run` words an exit and spaces its restarts (the restarts themselves: e2e)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from wingman.devstack.processes import child_exit_status, pid_alive, wait_for
from wingman.devstack.supervisor import MAX_DELAY_S, backoff, exit_reason


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
