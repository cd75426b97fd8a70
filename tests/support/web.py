"""A real ``wingmanctl serve`` process for end-to-end tests, and the JSON log lines it wrote."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.services import child_env, wait_until_ready
from wingman.config import Settings
from wingman.devstack.processes import free_port


@dataclass
class WebServer:
    url: str
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON line logged so far (anything else the process printed is skipped)."""
        entries = []
        for raw in self.log.read_text().splitlines():
            try:
                entries.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
        return entries

    def lines_of(self, request_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The lines logged while serving ``request_id``, once its ``request`` line is written."""
        deadline = time.monotonic() + timeout
        while True:
            mine = [e for e in self.lines() if e.get("request_id") == request_id]
            if any(e.get("event") == "request" for e in mine) or time.monotonic() > deadline:
                return mine
            time.sleep(0.05)


@contextmanager
def running_server(
    settings: Settings, folder: Path, workers: int = 1, soft_open_files: int | None = None
) -> Iterator[WebServer]:
    """``wingmanctl serve`` on a free port with exactly ``settings``, stopped with SIGTERM.

    ``soft_open_files``: start it under that soft open-file limit, as from a login shell.
    """
    port = free_port()
    log_path = folder / "web.log"
    command = [sys.executable, "-m", "wingman", "serve", "--workers", str(workers)]
    command += ["--port", str(port)]
    if soft_open_files is not None:
        command = ["sh", "-c", f'ulimit -Sn {soft_open_files} && exec "$@"', "sh", *command]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=child_env(settings, folder),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_ready(url), log_path.read_text()[-3000:]
        yield WebServer(url, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
