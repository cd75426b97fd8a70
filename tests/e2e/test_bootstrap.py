"""scripts/bootstrap repairs a half-made virtualenv instead of failing on it at every run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
BOOTSTRAP = Path(__file__).resolve().parents[2] / "scripts" / "bootstrap"


def bootstrap(venv: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHON")}
    # Never install system packages from a test; this host has what the stack needs.
    env.update(VENV=str(venv), WINGMAN_NO_APT="1", **extra)
    return subprocess.run(
        [str(BOOTSTRAP)], env=env, capture_output=True, text=True, timeout=400, check=False
    )


def assert_usable(venv: Path) -> None:
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import wingman, litestar, pytest, pip"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    again = bootstrap(venv)
    assert again.returncode == 0, again.stderr
    assert "python dependencies up to date" in again.stderr
    assert "incomplete" not in again.stderr


def without_pip(venv: Path) -> None:
    # What `python3 -m venv` leaves behind on Debian without pythonX.Y-venv: python, no pip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)


def python_gone(venv: Path) -> None:
    # A virtualenv whose interpreter was removed (e.g. after a distribution upgrade).
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /nonexistent\n")
    (venv / "bin" / "python").symlink_to("/nonexistent/python3.11")


def empty_folder(venv: Path) -> None:
    venv.mkdir()


@pytest.mark.parametrize("breakage", [without_pip, python_gone, empty_folder])
def test_a_broken_virtualenv_is_rebuilt(tmp_path: Path, breakage: object) -> None:
    venv = tmp_path / "venv"
    breakage(venv)  # type: ignore[operator]
    result = bootstrap(venv)
    assert result.returncode == 0, result.stderr
    if breakage is not empty_folder:
        assert f"virtualenv {venv} is incomplete" in result.stderr
    assert f"creating virtualenv {venv}" in result.stderr
    assert "[bootstrap] ready" in result.stderr
    assert_usable(venv)


def test_a_folder_that_is_not_a_virtualenv_is_left_alone(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "notes.txt").write_text("mine")
    result = bootstrap(venv)
    assert result.returncode == 1
    assert "exists but is not a virtualenv; move it away" in result.stderr
    assert (venv / "notes.txt").read_text() == "mine"


def test_an_unsupported_python_is_named_with_what_is_supported(tmp_path: Path) -> None:
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\necho 3.10\n")
    old.chmod(0o755)
    result = bootstrap(tmp_path / "venv", PYTHON=str(old))
    assert result.returncode == 1
    assert f"PYTHON={old} is Python 3.10; Wingman supports 3.13, 3.12, 3.11" in result.stderr
    assert not (tmp_path / "venv").exists()
