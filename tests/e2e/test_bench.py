"""`wingmanctl bench` end to end with several generators: a real stack, real users, a cost model.

One development stack is brought up for the module (real PostgreSQL, Redis, Granian and SAQ
processes) and brought down afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


def test_project_without_a_cost_model_says_so(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"name": "load", "users": 5}))
    shown = ctl("bench", "project", "--cores", "4", "--ram", "8", "--from", str(old))
    assert shown.returncode == 2
    assert "no cost model" in shown.stderr
