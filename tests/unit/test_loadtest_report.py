"""The results file people read: generators, their warnings, the cost model, the projection."""

from __future__ import annotations

from typing import Any

from wingman.loadtest.costmodel import project
from wingman.loadtest.fleet import Fleet
from wingman.loadtest.generator import Finished, GeneratorPlan
from wingman.loadtest.processes import ProcessSampler
from wingman.loadtest.report import markdown, projection_lines
from wingman.loadtest.runner import generator_rows
from wingman.loadtest.stats import Recorder


def result() -> dict[str, Any]:
    summary = {"count": 3, "p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 30.0, "max_ms": 31.0}
    return {
        "name": "two",
        "taken_at": "2026-12-04T12:00:00+00:00",
        "host": {"cores": 2, "ram_gb": 8.0},
        "users": 20,
        "users_held": 20,
        "duration_s": 8.0,
        "requests_per_s": 5.0,
        "rest": summary,
        "by_kind": {"tones": summary},
        "errors": {},
        "processes": {"web": {"cpu_percent": 40.0, "peak_rss_mb": 180.0}},
        "generators": {
            "count": 2,
            "pinning": "not pinned: 2 generators and only 1 CPUs available to this process",
            "processes": [
                {
                    "name": "generator-1",
                    "users": 10,
                    "users_held": 10,
                    "cpu": None,
                    "cpu_percent": 75.0,
                },
                {
                    "name": "generator-2",
                    "users": 10,
                    "users_held": 10,
                    "cpu": None,
                    "cpu_percent": 5.0,
                },
            ],
            "cpu_ms_per_user_minute": 240.0,
            "warnings": ["generator-1 used 75.0 % of a core (above 70%): add generators"],
        },
        "cost_model": {
            "users": 20,
            "cycle_s": 60.0,
            "seconds": 8.0,
            "idle_seconds": 5.0,
            "cpu_ms_per_user_minute": {"web": 150.0, "redis-queue": 6.0},
            "idle_cores": {"web": 0.01, "redis-queue": 0.002},
            "redis_commands_per_user_minute": {
                "redis-queue": {"total": 40.0, "idle_per_minute": 300.0, "by_command": {}}
            },
        },
        "replies": {"posted": 20, "done": 20, "lost": 0, "duplicated": 0},
        "verdict": {"passed": True, "failures": []},
    }


def test_the_report_shows_each_generator_its_warning_and_the_cost_model() -> None:
    text = markdown(result())
    assert "2 generator process(es) on the same host" in text
    assert "| generator-1 | - | 10 of 10 | 75.0 |" in text
    assert "**Warning:** generator-1 used 75.0 % of a core" in text
    assert "| redis-queue | 6.0 | 0.002 | 40.0 |" in text
    assert "Budget: met" in text


def test_the_projection_marks_the_first_component_to_saturate() -> None:
    projection = project({"web": 60.0, "redis-queue": 6.0}, 16, 32)
    lines = projection_lines(projection, "run.json", cycle_s=5)
    assert any(line.startswith("| redis-queue ← first | 6 |") for line in lines)
    assert "Projected: **6,000 users**, first limited by redis-queue." in lines
    assert any("one profile cycle every 5 s" in line for line in lines)
    assert not any("cycle" in line for line in projection_lines(projection, "run.json"))


def test_a_generator_above_seventy_percent_of_a_core_is_warned_about() -> None:
    plans = [
        GeneratorPlan(
            name=f"generator-{n}",
            base_url="http://127.0.0.1:1",
            codes_log="worker-default.log",
            first_index=10 * (n - 1),
            users=10,
            ramp=1.0,
            cycle_seconds=60.0,
            run_tag="t",
        )
        for n in (1, 2)
    ]
    finished = [
        Finished(
            name=plan.name,
            users_held=10,
            measured=Recorder().encode(),
            posted=[],
            completed_twice=0,
        )
        for plan in plans
    ]
    # CPU seconds as /proc would give them over a 10 s window: 7.5 s and 0.5 s.
    sampler = ProcessSampler(
        {"generator-1": 0, "generator-2": 0},
        _cpu_start={"generator-1": 1.0, "generator-2": 1.0},
        _cpu_end={"generator-1": 8.5, "generator-2": 1.5},
    )
    rows = generator_rows(Fleet(plans), finished, sampler, measured=10.0)
    assert [row["cpu_percent"] for row in rows["processes"]] == [75.0, 5.0]
    assert len(rows["warnings"]) == 1
    assert rows["warnings"][0].startswith("generator-1 used 75.0 % of a core")
    # 8 CPU seconds over 20 users x 10 s: 2,400 ms per user-minute.
    assert rows["cpu_ms_per_user_minute"] == 2400.0
