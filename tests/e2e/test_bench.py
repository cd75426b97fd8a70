"""`wingmanctl bench` end to end with several generators: a real stack, real users, a cost model;
a tiny capacity search and its picture; `wingmanctl top` watching the same stack.

One development stack is brought up for the module (real PostgreSQL, Redis, Granian and SAQ
processes) and brought down afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wingman.config import OfflineProviderSettings
from wingman.devstack.processes import free_port
from wingman.devstack.stack import DevStack
from wingman.loadtest.user import REST_KINDS

pytestmark = pytest.mark.e2e
CTL = [sys.executable, "-m", "wingman.ctl"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("WINGMAN_")}


def ctl(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CTL, *args], capture_output=True, text=True, timeout=timeout, env=ENV, check=False
    )


@pytest.fixture(scope="module")
def stack_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="wingman-bench-"))
    root.chmod(0o755)
    data = root / "var"
    try:
        up = ctl("dev", "up", "--port", str(free_port()), "--data-dir", str(data))
        assert up.returncode == 0, up.stderr
        yield data
    finally:
        DevStack(data).down(report=lambda _: None)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def results(stack_dir: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    out = Path(tempfile.mkdtemp(prefix="wingman-bench-results-"))
    run = ctl(
        "bench",
        "load",
        "--users",
        "20",
        "--generators",
        "2",
        "--duration",
        "8",
        "--ramp",
        "2",
        "--cycle",
        "5",
        "--name",
        "two",
        "--json",
        "--data-dir",
        str(stack_dir),
        "--out",
        str(out),
    )
    # 0 (budget met) or 1 (a latency budget missed on a busy test machine), never a crash.
    assert run.returncode in {0, 1}, run.stderr
    assert "generator-1 on CPU" in run.stderr or "not pinned" in run.stderr
    yield json.loads(run.stdout), out / next(p.name for p in out.glob("*-two.json"))
    shutil.rmtree(out, ignore_errors=True)


def test_two_generators_keep_every_check_and_report_their_cpu(
    results: tuple[dict[str, Any], Path],
) -> None:
    data, _ = results
    assert data["users_held"] == 20
    assert data["errors"] == {}
    replies = data["replies"]
    assert replies["posted"] >= 20
    assert (replies["lost"], replies["duplicated"]) == (0, 0)
    assert replies["done"] == replies["posted"]
    # The merged REST histogram holds exactly the samples of every REST kind of both generators.
    assert data["rest"]["count"] == sum(
        data["by_kind"][kind]["count"] for kind in REST_KINDS if kind in data["by_kind"]
    )
    assert data["rest"]["count"] > 0
    generators = data["generators"]
    assert generators["count"] == 2
    rows = generators["processes"]
    assert [(r["name"], r["users"], r["users_held"]) for r in rows] == [
        ("generator-1", 10, 10),
        ("generator-2", 10, 10),
    ]
    assert all(r["cpu_percent"] > 0 for r in rows)
    if len(os.sched_getaffinity(0)) >= 2:
        assert len({r["cpu"] for r in rows}) == 2
    assert generators["cpu_ms_per_user_minute"] > 0


def test_the_first_delta_is_judged_beyond_the_offline_providers_first_token(
    results: tuple[dict[str, Any], Path],
) -> None:
    data, path = results
    verdict = data["verdict"]
    assert verdict["provider_first_token_ms"] == OfflineProviderSettings().token_interval_ms
    first = data["by_kind"]["reply_first_delta"]["p50_ms"]
    provider = verdict["provider_first_token_ms"]
    assert verdict["first_delta_overhead_ms"] == round(first - provider, 1)
    assert "beyond the provider's first token" in path.with_suffix(".md").read_text()


def test_the_results_carry_the_cost_model(results: tuple[dict[str, Any], Path]) -> None:
    _, path = results
    model = json.loads(path.read_text())["cost_model"]
    assert model["users"] == 20
    assert model["cycle_s"] == 5
    costs = model["cpu_ms_per_user_minute"]
    assert {"web", "worker-ai", "postgres", "redis-queue", "redis-cache"} <= set(costs)
    assert costs["web"] > 0
    assert costs["worker-ai"] > 0
    redis = model["redis_commands_per_user_minute"]
    assert set(redis) == {"redis-queue", "redis-cache"}
    assert redis["redis-queue"]["total"] > 0
    assert set(model["idle_cores"]) == set(costs)


def test_project_prints_a_table_and_json(results: tuple[dict[str, Any], Path]) -> None:
    _, path = results
    table = ctl("bench", "project", "--cores", "16", "--ram", "32", "--from", str(path))
    assert table.returncode == 0, table.stderr
    assert "| web |" in table.stdout or "| web ← first |" in table.stdout
    assert "| whole host" in table.stdout
    assert "Projected: **" in table.stdout
    shown = ctl("bench", "project", "--cores", "16", "--ram", "32", "--from", str(path), "--json")
    assert shown.returncode == 0, shown.stderr
    projection = json.loads(shown.stdout)["projection"]
    components = {row["component"] for row in projection["rows"]} | {"whole host"}
    assert projection["first"] in components
    assert projection["users"] > 0
    assert {row["component"]: row["cores"] for row in projection["rows"]}["redis-queue"] == 1
    # On the measured host, with the generators that shared it: fewer users for the whole host.
    here = ctl(
        "bench", "project", "--cores", "2", "--ram", "8", "--from", str(path), "--json",
        "--with-generators",
    )  # fmt: skip
    alone = ctl("bench", "project", "--cores", "2", "--ram", "8", "--from", str(path), "--json")
    host_here = json.loads(here.stdout)["projection"]["host"]
    host_alone = json.loads(alone.stdout)["projection"]["host"]
    assert host_here["cpu_ms_per_user_minute"] > host_alone["cpu_ms_per_user_minute"]
    assert "load generators" in host_here["basis"]


def test_project_without_a_cost_model_says_so(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"name": "load", "users": 5}))
    shown = ctl("bench", "project", "--cores", "4", "--ram", "8", "--from", str(old))
    assert shown.returncode == 2
    assert "no cost model" in shown.stderr


# -- the capacity search and its picture -------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"


def test_a_tiny_capacity_search_draws_its_steps(stack_dir: Path, tmp_path: Path) -> None:
    run = ctl(
        "bench",
        "capacity",
        "--start",
        "2",
        "--step",
        "2",
        "--max-users",
        "4",
        "--duration",
        "5",
        "--cycle",
        "5",
        "--data-dir",
        str(stack_dir),
        "--out",
        str(tmp_path),
    )
    # 0 (2 users held), or 1 on a test machine too busy for the latency budget; never a crash.
    assert run.returncode in {0, 1}, run.stderr
    (results,) = tmp_path.glob("*-capacity.json")
    steps = json.loads(results.read_text())["steps"]
    svg = results.with_suffix(".svg")
    assert f"]({svg.name})" in results.with_suffix(".md").read_text()
    assert str(svg) in run.stderr
    root = ET.parse(svg).getroot()  # noqa: S314 - the file this test just had written
    assert root.tag == f"{SVG}svg"
    lines = {
        line.get("data-series"): line.get("points", "") for line in root.iter(f"{SVG}polyline")
    }
    assert set(lines) == {"p50", "p95", "p99", *steps[0]["processes"]}
    assert {"web", "worker-ai", "postgres", "redis-queue", "redis-cache"} <= set(lines)
    assert all(len(points.split()) == len(steps) for points in lines.values())
    texts = {"".join(text.itertext()) for text in root.iter(f"{SVG}text")}
    assert {"users", "milliseconds", "% of one core"} <= texts


# -- wingmanctl top ----------------------------------------------------------------------------


@pytest.fixture
def busy_stack(stack_dir: Path) -> Iterator[Path]:
    """Requests to the stack from a thread for as long as the test runs."""
    url = f"http://127.0.0.1:{DevStack(stack_dir).state().web_port}/health/live"
    done = threading.Event()

    def ask() -> None:
        with httpx.Client(timeout=5) as client:
            while not done.is_set():
                client.get(url)
                time.sleep(0.02)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    yield stack_dir
    done.set()
    thread.join(10)


def shown_value(table: str, row: str) -> str:
    """The "now" column of one row of the table `top` prints."""
    for line in table.splitlines():
        if line.strip().startswith(row + "  "):
            return line.strip()[len(row) :].split()[0]
    raise AssertionError(f"no row {row!r} in:\n{table}")


def start_top(*args: str, env: dict[str, str] = ENV) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CTL, "top", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def check_live_frames_then_ctrl_c(live: subprocess.Popen[str]) -> None:
    """Not a terminal, the live view prints one frame after the other: read two, then Ctrl-C."""
    assert live.stdout is not None
    frames = 0
    while frames < 2:
        line = live.stdout.readline()
        assert line, live.communicate()[1]
        if line.strip().startswith("requests/s  "):
            frames += 1
    live.send_signal(signal.SIGINT)
    # Read on while it quits: frames printed while the other views ran may still fill the pipe,
    # and its exit flushes stdout into it.
    _, errors = live.communicate(timeout=30)
    assert live.returncode == 0, errors


def test_top_shows_real_figures_live_once_and_as_json(busy_stack: Path) -> None:
    # The three views at once: each command takes seconds to start on a busy test machine.
    folder = ("--data-dir", str(busy_stack))
    live = start_top("--interval", "0.5", *folder)
    once = start_top("--once", "--interval", "1", *folder)
    as_json = start_top("--json", "--interval", "1", *folder)
    try:
        table, errors = once.communicate(timeout=120)
        assert once.returncode == 0, errors
        assert float(shown_value(table, "requests/s")) > 0
        assert shown_value(table, "latency p95 ms") != "no"  # "no requests"
        # 0 once every socket closed; "not exported" before the first socket of this stack.
        assert shown_value(table, "users online") in {"0", "not"}
        for unit in ("web", "worker-ai", "postgres", "redis-queue", "redis-cache"):
            assert shown_value(table, f"cpu {unit}") not in {"down", "-"}

        text, errors = as_json.communicate(timeout=120)
        assert as_json.returncode == 0, errors
        data = json.loads(text)
        assert data["layout"] == "development"
        assert data["requests_per_s"] > 0
        assert 0 < data["p50_ms"] <= data["p95_ms"]
        assert data["error_rate"] == 0
        assert set(data["queues"]) == {"ai", "default", "heavy"}
        assert data["replies_in_flight"] >= 0
        assert set(data["cpu_percent"]) == {
            "web",
            "worker-ai",
            "worker-default",
            "worker-heavy",
            "postgres",
            "redis-queue",
            "redis-cache",
        }
        # The web server answered requests all along: its processes used CPU.
        assert data["cpu_percent"]["web"] > 0
        assert data["units_down"] == []

        check_live_frames_then_ctrl_c(live)
    finally:
        for process in (live, once, as_json):
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_top_says_when_metrics_do_not_answer(stack_dir: Path) -> None:
    # The stack's own settings with a port nothing listens on: no /metrics to read.
    env = ENV | {
        "WINGMAN_CONFIG": str(stack_dir / "wingman.toml"),
        "WINGMAN_SERVER__PORT": str(free_port()),
    }
    silent = start_top("--once", env=env)
    _, errors = silent.communicate(timeout=120)
    assert silent.returncode == 2
    assert "do not answer" in errors
