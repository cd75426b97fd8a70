"""`wingmanctl dev down` while `wingmanctl dev run` keeps the stack up (as `make down` in one
terminal and `make run` in another): the supervisor stops, with everything it ran, and nothing is
started again afterwards."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.dev_run import CTL, dev_run

pytestmark = pytest.mark.e2e


def test_dev_down_stops_a_dev_run_and_nothing_comes_back() -> None:
    with dev_run() as run:
        pid_file = run.data / "run" / "dev-run.pid"
        assert pid_file.read_text().strip() == str(run.proc.pid)
        assert all(row.running for row in run.stack.status())

        down = subprocess.run(
            [*CTL, "dev", "down", "--data-dir", str(run.data)],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")},
            timeout=180,
            check=False,
        )
        assert down.returncode == 0, down.stderr
        assert f"dev run (pid {run.proc.pid}): stopped" in down.stdout + down.stderr
        # The supervisor has exited, so nothing can start the processes again.
        assert run.proc.wait(30) == 0, run.output.read_text()
        assert not [row.name for row in run.stack.status() if row.running], run.stack.status()
        assert not pid_file.exists()
