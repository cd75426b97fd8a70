"""A data folder the service user cannot reach is named, with the fix, before anything starts."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from wingman.devstack.access import unreachable_reason
from wingman.devstack.processes import RunAs, service_identity

root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="the servers run as the service user only when started by root"
)


@pytest.fixture
def home() -> Iterator[Path]:
    """A folder like /root: its owner may enter it, nobody else (not under pytest's tmp dir)."""
    folder = Path(tempfile.mkdtemp(prefix="wingman-home-"))
    folder.chmod(0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_as_ourselves_every_folder_is_reachable(home: Path) -> None:
    assert unreachable_reason(home / "checkout" / "var", RunAs()) is None


@root_only
def test_an_open_folder_is_reachable(home: Path) -> None:
    home.chmod(0o755)
    assert unreachable_reason(home / "checkout" / "var", service_identity()) is None


@root_only
def test_the_folder_that_blocks_is_named_with_the_fix(home: Path) -> None:
    (home / "checkout").mkdir()
    reason = unreachable_reason(home / "checkout" / "var" / "postgres", service_identity())
    assert reason is not None
    assert f"{home} (mode 0700)" in reason
    assert "'wingman' user" in reason
    assert "Move the checkout" in reason
    assert "run as a normal user" in reason


@root_only
def test_dev_up_from_an_unreachable_checkout_fails_clearly(home: Path) -> None:
    data = home / "checkout" / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    result = run_cli("wingman.ctl", "dev", "up", "--data-dir", str(data), env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: postgres: the data folder {data / 'postgres'} is out of reach" in result.stderr
    assert "Move the checkout" in result.stderr
    # Nothing was initialised or started.
    assert not (data / "postgres" / "data").exists()
    assert not (data / "redis").exists()


@root_only
def test_processes_creating_the_service_user_at_once_all_get_the_one_it_ends_with() -> None:
    """Eight processes start on a machine without the user (as test workers or two `dev run`s
    do): each gets the same uid, and it is the uid the user has afterwards."""
    name = f"wm-race-{uuid.uuid4().hex[:8]}"
    script = (
        "import sys\n"
        "from wingman.devstack.processes import system_user\n"
        "print(system_user(sys.argv[1]).pw_uid)\n"
    )
    try:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", script, name], stdout=subprocess.PIPE, text=True
            )
            for _ in range(8)
        ]
        uids = {int(worker.communicate(timeout=60)[0]) for worker in workers}
        assert uids == {pwd.getpwnam(name).pw_uid}
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
