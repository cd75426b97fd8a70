"""Running Wingman's own commands as child processes, the way an operator or a unit would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.services import child_env
from wingman.config import Settings


def run_cli(
    module: str, *args: str, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` with exactly ``env``; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def bad_settings_env(folder: Path, toml: str) -> dict[str, str]:
    """An environment whose settings file holds ``toml`` (and nothing else leaks in)."""
    config = folder / "wingman.toml"
    config.write_text(toml)
    return {"WINGMAN_CONFIG": str(config), "PATH": "/usr/bin:/bin"}


def users_ctl(settings: Settings, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``wingmanctl users <args>`` against exactly ``settings`` (written under ``folder``)."""
    return run_cli("wingman.ctl", "users", *args, env=child_env(settings, folder), timeout=60)
