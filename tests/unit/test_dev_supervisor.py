"""How `dev run` words an exit and spaces its restarts (the restarts themselves: e2e)."""

from __future__ import annotations

import signal

from wingman.devstack.supervisor import MAX_DELAY_S, backoff, exit_reason


def test_restart_delays_double_up_to_the_cap() -> None:
    assert [backoff(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff(100) == MAX_DELAY_S


def test_exit_reasons_name_the_signal() -> None:
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_reason(3) == "exited with status 3"
    assert exit_reason(None) == "stopped"
