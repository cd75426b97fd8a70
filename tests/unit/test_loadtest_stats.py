"""The load harness's arithmetic: exact percentiles and the budget verdict."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from wingman.loadtest.runner import Budget, verdict
from wingman.loadtest.stats import Recorder, percentile


def test_nearest_rank_percentiles() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1), st.floats(0.1, 100))
def test_a_percentile_is_an_observed_value_and_monotone(values: list[float], pct: float) -> None:
    found = cast(float, percentile(values, pct))
    higher = cast(float, percentile(values, min(100.0, pct + 1)))
    assert found in values
    assert found <= higher


def test_samples_count_only_while_measuring() -> None:
    recorder = Recorder()
    recorder.observe("tones", 5.0)
    recorder.measuring = True
    recorder.observe("tones", 7.0)
    assert recorder.summary("tones")["count"] == 1


def result(p95: float, p99: float, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rest": {"p95_ms": p95, "p99_ms": p99},
        "errors": {},
        "users": 10,
        "users_held": 10,
        "replies": {"lost": 0, "duplicated": 0},
    }
    return base | extra


def test_verdict_names_every_missed_budget() -> None:
    assert verdict(result(50, 120), Budget()) == {"passed": True, "failures": []}
    missed = verdict(
        result(
            150,
            300,
            errors={"reply:timeout": 2},
            users_held=9,
            replies={"lost": 1, "duplicated": 0},
        ),
        Budget(),
    )
    assert not missed["passed"]
    assert len(missed["failures"]) == 5
