"""The capacity picture: a valid SVG with one polyline per series, ticks that cover the data."""

from __future__ import annotations

import itertools
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from wingman.ctl.main import main
from wingman.loadtest.plot import capacity_svg, nice_ticks
from wingman.loadtest.report import markdown, write_results

SVG = "{http://www.w3.org/2000/svg}"


def step(users: int, p95: float, web_cpu: float) -> dict[str, Any]:
    return {
        "users": users,
        "rest": {"count": 10, "p50_ms": p95 / 3, "p95_ms": p95, "p99_ms": p95 * 2, "max_ms": 1},
        "processes": {
            "web": {"cpu_percent": web_cpu, "peak_rss_mb": 100.0},
            "redis-<queue> & co": {"cpu_percent": 1.0, "peak_rss_mb": 9.0},
        },
    }


def capacity(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "capacity",
        "taken_at": "2026-12-05T09:00:00+00:00",
        "capacity": 20,
        "steps": steps,
    }


def reportable_capacity() -> dict[str, Any]:
    """A one-step capacity result with every field the Markdown report reads."""
    result = capacity([step(10, 12.0, 30.0)])
    result["steps"][0] |= {
        "users_held": 10,
        "duration_s": 5,
        "requests_per_s": 1.0,
        "host": {"cores": 2, "ram_gb": 4},
        "by_kind": {},
        "errors": {},
        "generators": {
            "count": 1,
            "pinning": "-",
            "cpu_ms_per_user_minute": 1,
            "processes": [],
            "warnings": [],
        },
    }
    return result


def test_one_polyline_per_series_with_a_point_per_step() -> None:
    result = capacity([step(10, 12.0, 30.0), step(20, 40.0, 55.5), step(30, 300.0, 90.0)])
    root = ET.fromstring(capacity_svg(result))  # noqa: S314 - our own output
    assert root.tag == f"{SVG}svg"
    lines = {line.get("data-series"): line for line in root.iter(f"{SVG}polyline")}
    # A name with markup characters is escaped, not broken XML.
    assert set(lines) == {"p50", "p95", "p99", "web", "redis-<queue> & co"}
    for line in lines.values():
        points = [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]
        assert len(points) == 3
        xs = [x for x, _ in points]
        assert xs == sorted(xs)
    # Higher latency is drawn higher (smaller y) on the picture.
    p95 = [float(p.split(",")[1]) for p in lines["p95"].get("points", "").split()]
    assert p95[0] > p95[1] > p95[2]
    texts = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    assert {"users", "milliseconds", "% of one core", "REST latency"} <= texts


def test_a_single_step_is_still_a_picture() -> None:
    svg = capacity_svg(capacity([step(5, 0.0, 0.0)]))
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    points = [line.get("points", "") for line in root.iter(f"{SVG}polyline")]
    assert all(len(p.split()) == 1 for p in points)
    assert not any("nan" in p or "inf" in p for p in points)


def test_the_capacity_markdown_links_its_picture() -> None:
    result = reportable_capacity()
    assert "](2026-12-05-capacity.svg)" in markdown(result)


def test_a_second_run_of_one_name_and_day_keeps_the_first_files(tmp_path: Path) -> None:
    result = reportable_capacity()
    first = write_results(result, tmp_path)
    kept = {path: path.read_bytes() for path in first}
    second = write_results(result | {"capacity": 30}, tmp_path)
    third = write_results(result, tmp_path)
    assert [p.name for p in first] == [f"2026-12-05-capacity{s}" for s in (".json", ".md", ".svg")]
    assert [p.name for p in second] == [
        f"2026-12-05-capacity-2{s}" for s in (".json", ".md", ".svg")
    ]
    assert third[0].name == "2026-12-05-capacity-3.json"
    assert {path: path.read_bytes() for path in first} == kept
    assert json.loads(second[0].read_text())["capacity"] == 30
    # Each Markdown links its own picture.
    assert "](2026-12-05-capacity-2.svg)" in second[1].read_text()


@given(st.floats(-1e6, 1e6), st.floats(0, 1e6))
def test_ticks_cover_the_range_in_round_even_steps(low: float, span: float) -> None:
    high = low + span
    ticks = nice_ticks(low, high)
    assert 2 <= len(ticks) <= 12
    steps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    (gap,) = steps
    # Covered up to a millionth of a step (far below a pixel).
    assert ticks[0] <= low + 1e-6 * gap
    assert ticks[-1] >= high - 1e-6 * gap
    mantissa = gap / 10 ** math.floor(math.log10(gap))
    assert round(mantissa, 6) in {1, 2, 5, 10}


def test_bench_plot_draws_a_results_file_and_refuses_another(tmp_path: Path) -> None:
    results = tmp_path / "2026-12-05-capacity.json"
    results.write_text(json.dumps(capacity([step(10, 12.0, 30.0), step(20, 40.0, 55.5)])))
    drawn = CliRunner().invoke(main, ["bench", "plot", str(results)])
    assert drawn.exit_code == 0, drawn.output
    root = ET.parse(results.with_suffix(".svg")).getroot()  # noqa: S314 - our own output
    assert len(list(root.iter(f"{SVG}polyline"))) == 5
    other = tmp_path / "load.json"
    other.write_text(json.dumps({"name": "load", "users": 5}))
    refused = CliRunner().invoke(main, ["bench", "plot", str(other)])
    assert refused.exit_code == 2
    assert "not the results file of `bench capacity`" in refused.output
    assert not other.with_suffix(".svg").exists()
