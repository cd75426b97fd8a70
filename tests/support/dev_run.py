"""A real `wingmanctl dev run` in the foreground of a fresh folder, as `make run` starts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import wait_until_ready
from wingman.devstack.processes import free_port
from wingman.devstack.stack import DevStack

CTL = [sys.executable, "-m", "wingman.ctl"]


@dataclass(frozen=True)
class DevRun:
    proc: subprocess.Popen[bytes]
    data: Path
    base_url: str
    # What the supervisor says on its terminal.
    output: Path

    @property
    def stack(self) -> DevStack:
        return DevStack(self.data)

    def said(self, text: str) -> bool:
        return text in self.output.read_text(errors="replace")


@contextmanager
def dev_run(env_extra: dict[str, str] | None = None) -> Iterator[DevRun]:
    """Start it with a clean environment (plus ``env_extra``) and wait until the web answers
    ready; afterwards kill it if it still runs, stop what is left and remove the folder."""
    root = Path(tempfile.mkdtemp(prefix="wingman-run-"))
    root.chmod(0o755)
    data = root / "var"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    env.update(env_extra or {})
    output = root / "dev-run.out"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [*CTL, "dev", "run", "--port", str(port), "--data-dir", str(data)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        if not wait_until_ready(base_url, 240):
            pytest.fail(f"dev run did not become ready:\n{output.read_text()}")
        yield DevRun(proc, data, base_url, output)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        DevStack(data).down(report=lambda _: None)
        shutil.rmtree(root, ignore_errors=True)
