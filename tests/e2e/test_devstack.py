"""`wingmanctl dev` end to end: real PostgreSQL, Redis, Granian and SAQ processes.

One stack is brought up for the module; the tests run in order against it and the last one brings
it down and checks that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import run_cli
from wingman.devstack.processes import free_port, pid_alive, port_open, wait_for
from wingman.devstack.stack import DevStack

pytestmark = pytest.mark.e2e
CTL = [sys.executable, "-m", "wingman.ctl"]


def ctl(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}
    result = subprocess.run(
        [*CTL, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"wingmanctl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def stack_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="wingman-dev-"))
    root.chmod(0o755)
    yield root / "var"
    # Whatever happened, leave no process behind.
    DevStack(root / "var").down(report=lambda _: None)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def web_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def base_url(stack_dir: Path, web_port: int) -> str:
    result = ctl("dev", "up", "--port", str(web_port), data_dir=stack_dir)
    url = result.stdout.strip().splitlines()[-1]
    assert url == f"http://127.0.0.1:{web_port}"
    assert "migrations: database is at head" in result.stderr
    return url


def test_up_serves_a_ready_stack(base_url: str) -> None:
    response = httpx.get(f"{base_url}/health/ready", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_up_twice_is_safe(base_url: str, stack_dir: Path, web_port: int) -> None:
    result = ctl("dev", "up", "--port", str(web_port), data_dir=stack_dir)
    assert result.stdout.strip().splitlines()[-1] == base_url
    for name in ("postgres", "redis-queue", "redis-cache", "web", "worker-ai"):
        assert f"{name}: already running" in result.stderr


def test_status_json_lists_every_component(base_url: str, stack_dir: Path) -> None:
    result = ctl("dev", "status", "--json", data_dir=stack_dir)
    rows = {row["component"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {
        "postgres",
        "redis-queue",
        "redis-cache",
        "web",
        "worker-ai",
        "worker-default",
        "worker-heavy",
    }
    assert all(row["state"] == "running" and row["pid"] for row in rows.values())


def test_bench_load_signs_in_streams_and_checks_every_reply(
    base_url: str, stack_dir: Path, tmp_path: Path
) -> None:
    """The load harness against the stack: real sign-ins, sockets, replies; a results file."""
    out = tmp_path / "results"
    result = subprocess.run(
        [
            *CTL,
            "bench",
            "load",
            "--users",
            "4",
            "--duration",
            "8",
            "--ramp",
            "1",
            "--cycle",
            "5",
            "--name",
            "e2e",
            "--json",
            "--data-dir",
            str(stack_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")},
        check=False,
    )
    # 0 (budget met) or 1 (a latency budget missed on a busy test machine), never a crash.
    assert result.returncode in {0, 1}, result.stderr
    report = json.loads(result.stdout)
    assert report["users_held"] == 4
    assert report["errors"] == {}
    replies = report["replies"]
    assert replies["posted"] >= 4
    assert (replies["lost"], replies["duplicated"]) == (0, 0)
    assert report["by_kind"]["reply_completed"]["count"] >= 1
    assert {"web", "worker-ai", "postgres"} <= set(report["processes"])
    files = sorted(p.name for p in out.iterdir())
    assert [name.rsplit("-", 1)[-1] for name in files] == ["e2e.json", "e2e.md"]
    # The per-IP allowances widened for the run are back as they were.
    shown = subprocess.run(
        [*CTL, "config", "get", "rate_limits", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WINGMAN_CONFIG": str(stack_dir / "wingman.toml")},
        check=True,
    )
    value = json.loads(shown.stdout)["value"]
    assert value["anon"] == {"limit": 100, "period": "hour"}
    assert value["otp"] == {"limit": 5, "period": "minute"}


def test_settings_file_is_private(base_url: str, stack_dir: Path) -> None:
    for name in ("wingman.toml", "devstack.json"):
        assert (stack_dir / name).stat().st_mode & 0o077 == 0


def test_database_crash_is_reported_and_recovered(base_url: str, stack_dir: Path) -> None:
    stack = DevStack(stack_dir)
    web_pid = stack.status()[3].pid
    postgres = stack.postgres()
    postmaster = postgres.pid()
    assert postmaster is not None
    # A crash, not a shutdown: SIGKILL the postmaster and all its backends at once.
    os.killpg(os.getpgid(postmaster), signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(postmaster), 10)

    def readiness() -> httpx.Response:
        return httpx.get(f"{base_url}/health/ready", timeout=10)

    down = readiness()
    assert down.status_code == 503
    assert down.json()["checks"]["database"]["status"] == "fail"
    assert down.json()["checks"]["redis_queue"]["status"] == "ok"

    postgres.start()
    assert wait_for(lambda: readiness().status_code == 200, 30, interval=0.5)
    # The same web process recovered: its pool replaced the dead connections.
    assert stack.status()[3].pid == web_pid


def test_down_leaves_nothing_behind(base_url: str, stack_dir: Path) -> None:
    stack = DevStack(stack_dir)
    pids = [row.pid for row in stack.status() if row.pid]
    state = stack.load_state()
    assert state is not None
    ports = [state.postgres_port, state.redis_queue_port, state.redis_cache_port, state.web_port]

    result = ctl("dev", "down", data_dir=stack_dir)
    assert "postgres: stopped (fast shutdown)" in result.stderr
    assert "killed" not in result.stderr  # everything stopped on SIGTERM, within its grace period

    assert wait_for(lambda: not any(pid_alive(pid) for pid in pids), 10)
    assert not any(port_open(port) for port in ports)
    status = ctl("dev", "status", "--json", data_dir=stack_dir, check=False)
    assert status.returncode == 1
    assert all(row["state"] == "stopped" for row in json.loads(status.stdout))


def test_missing_binaries_fail_with_install_hint(tmp_path: Path) -> None:
    # A PATH without redis-server (python is called by absolute path).
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    result = run_cli("wingman.ctl", "dev", "up", "--data-dir", str(tmp_path / "var"), env=env)
    assert result.returncode == 2
    assert "redis-server not found" in result.stderr
    assert "apt-get install" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was started or initialised.
    assert not (tmp_path / "var" / "postgres").exists()
