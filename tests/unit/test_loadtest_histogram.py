"""Latency histograms: merging K generators' histograms is exact, percentiles are within 1 %."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wingman.loadtest.histogram import RELATIVE_PRECISION, LatencyHistogram
from wingman.loadtest.stats import Recorder, percentile

# Latencies as the harness sees them: sub-millisecond to minutes, in ms.
latency = st.floats(0.0, 600_000.0, allow_nan=False, allow_infinity=False)
PERCENTILES = (50.0, 95.0, 99.0, 99.9)


def histogram_of(values: list[float]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    return histogram


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(latency, max_size=60), min_size=1, max_size=6))
def test_merged_histograms_equal_the_histogram_of_the_merged_samples(
    parts: list[list[float]],
) -> None:
    merged = LatencyHistogram()
    for part in parts:
        # Through the wire format, as each generator sends its histogram to the coordinator.
        merged.merge(LatencyHistogram.decode(histogram_of(part).encode()))
    everything = [value for part in parts for value in part]
    whole = histogram_of(everything)
    assert merged.bucket_counts() == whole.bucket_counts()
    assert merged.count == len(everything)
    assert merged.max_ms == (max(everything) if everything else None)
    for pct in PERCENTILES:
        assert merged.percentile(pct) == whole.percentile(pct)


@settings(max_examples=80, deadline=None)
@given(st.lists(latency, min_size=1, max_size=300), st.sampled_from(PERCENTILES))
def test_a_percentile_is_within_the_stated_precision_of_the_exact_nearest_rank(
    values: list[float], pct: float
) -> None:
    exact = percentile(values, pct)
    found = histogram_of(values).percentile(pct)
    assert exact is not None
    assert found is not None
    # Never below the exact value; at most 1 % (plus the 1 µs the values are rounded up to).
    assert exact <= found <= exact * (1 + RELATIVE_PRECISION) + 0.001


def test_an_empty_histogram_reports_nothing() -> None:
    summary = LatencyHistogram().summary()
    assert summary == {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    assert LatencyHistogram.decode(LatencyHistogram().encode()).count == 0


def test_recorders_merge_histograms_and_errors() -> None:
    first, second = Recorder(measuring=True), Recorder(measuring=True)
    first.observe("tones", 5.0)
    second.observe("tones", 7.0)
    second.observe("config", 9.0)
    second.error("reply:timeout")
    first.merge(Recorder.decode(second.encode()))
    assert first.summary("tones")["count"] == 2
    assert first.combined(("tones", "config")).count == 3
    assert first.errors == {"reply:timeout": 1}
