"""The arithmetic of ``wingmanctl top``: samples from real exposition text, rates, sparklines."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from wingman.ops.top import BLOCKS, History, Sample, frame, parse_sample, series, sparkline

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def exposition(
    *, ok: int, failed: int, durations: list[float], sockets: int, ai_queued: int
) -> str:
    """Prometheus text as a web process writes it, with Wingman's metric names."""
    registry = CollectorRegistry()
    requests = Counter(
        "wingman_requests", "", ["method", "route", "status_code"], registry=registry
    )
    requests.labels("GET", "/api/v1/tones", "200").inc(ok)
    requests.labels("GET", "/api/v1/config", "503").inc(failed)
    duration = Histogram(
        "wingman_request_duration_seconds",
        "",
        ["method", "route"],
        buckets=BOUNDS,
        registry=registry,
    )
    for seconds in durations:
        duration.labels("GET", "/api/v1/tones").observe(seconds)
    Gauge("wingman_websocket_connections", "", registry=registry).set(sockets)
    Gauge("wingman_requests_in_flight", "", registry=registry).set(3)
    depth = Gauge("wingman_queue_depth", "", ["queue", "state"], registry=registry)
    depth.labels("ai", "queued").set(ai_queued)
    depth.labels("ai", "active").set(2)
    depth.labels("default", "scheduled").set(1)
    return generate_latest(registry).decode()


def sample(at: float, requests: float, buckets: dict[float, float], cpu: float = 0.0) -> Sample:
    return Sample(
        at=at,
        requests=requests,
        errors=0.0,
        buckets=buckets,
        websockets=None,
        requests_in_flight=None,
        queues={},
        cpu_seconds={"web": cpu},
    )


def test_a_sample_reads_every_figure_of_the_exposition() -> None:
    text = exposition(ok=7, failed=3, durations=[0.004] * 4, sockets=5, ai_queued=4)
    taken = parse_sample(text, at=10.0, cpu_seconds={"web": 1.5})
    assert (taken.requests, taken.errors) == (10, 3)
    assert taken.buckets[0.005] == 4
    assert taken.buckets[float("inf")] == 4
    assert taken.websockets == 5
    # The gauge said 3: one of them is the scrape itself.
    assert taken.requests_in_flight == 2
    assert taken.queues == {"ai": {"queued": 4, "active": 2}, "default": {"scheduled": 1}}
    assert taken.cpu_seconds == {"web": 1.5}


def test_not_an_exposition_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_sample("<html>502 Bad Gateway</html>\n{", at=0.0, cpu_seconds={})


def test_a_frame_has_rates_percentiles_and_cpu_between_two_samples() -> None:
    before = parse_sample(
        exposition(ok=10, failed=0, durations=[0.004] * 10, sockets=1, ai_queued=0),
        at=100.0,
        cpu_seconds={"web": 10.0, "postgres": 3.0},
    )
    # 20 more requests in 2 s: 10 fast ones, 10 between 100 and 250 ms; 2 of them failed.
    after = parse_sample(
        exposition(ok=28, failed=2, durations=[0.004] * 20 + [0.2] * 10, sockets=4, ai_queued=1),
        at=102.0,
        cpu_seconds={"web": 11.0, "postgres": 3.1, "worker-ai": 5.0},
    )
    shown = frame(before, after)
    assert shown.requests_per_s == pytest.approx(10.0)
    assert shown.error_rate == pytest.approx(0.1)
    # Half of the window's requests are at most 5 ms; the 95th percentile is in (100, 250] ms.
    assert shown.p50_ms is not None
    assert shown.p50_ms <= 5
    assert shown.p95_ms is not None
    assert 100 < shown.p95_ms <= 250
    assert shown.users_online == 4
    assert shown.replies_in_flight == 3  # 1 queued + 2 active
    assert shown.cpu_percent["web"] == pytest.approx(50.0)
    assert shown.cpu_percent["postgres"] == pytest.approx(5.0)
    # A unit seen for the first time has no rate yet.
    assert shown.cpu_percent["worker-ai"] is None


def test_no_requests_in_the_window_means_no_latency() -> None:
    same = sample(1.0, 10, {0.005: 10.0, float("inf"): 10.0})
    shown = frame(same, msgspec.structs.replace(same, at=3.0))
    assert shown.requests_per_s == 0
    assert (shown.p50_ms, shown.p95_ms, shown.error_rate) == (None, None, None)


def test_a_restarted_web_server_is_counted_from_zero() -> None:
    before = sample(0.0, 1000, {0.005: 1000.0, float("inf"): 1000.0}, cpu=50.0)
    after = sample(2.0, 6, {0.005: 6.0, float("inf"): 6.0}, cpu=0.2)
    shown = frame(before, after)
    assert shown.requests_per_s == pytest.approx(3.0)
    assert shown.p50_ms is not None
    assert shown.p50_ms <= 5
    assert shown.cpu_percent["web"] == 0


counts = st.lists(st.integers(0, 1000), min_size=len(BOUNDS) + 1, max_size=len(BOUNDS) + 1)


@given(counts, counts, st.floats(0.1, 60))
def test_rates_are_never_negative_and_p50_is_at_most_p95(
    first: list[int], added: list[int], window: float
) -> None:
    bounds = [*BOUNDS, float("inf")]

    def cumulative(per_bucket: list[int]) -> dict[float, float]:
        total, out = 0, {}
        for bound, count in zip(bounds, per_bucket, strict=True):
            total += count
            out[bound] = float(total)
        return out

    before_buckets = cumulative(first)
    after_buckets = cumulative([a + b for a, b in zip(first, added, strict=True)])
    before = sample(0.0, before_buckets[float("inf")], before_buckets)
    after = sample(window, after_buckets[float("inf")], after_buckets, cpu=1.0)
    shown = frame(before, after)
    assert shown.requests_per_s == pytest.approx(sum(added) / window)
    assert all(v is None or v >= 0 for v in shown.cpu_percent.values())
    if sum(added) == 0:
        assert shown.p95_ms is None
    else:
        assert shown.p50_ms is not None
        assert shown.p95_ms is not None
        assert 0 <= shown.p50_ms <= shown.p95_ms <= 1000


values = st.lists(st.one_of(st.none(), st.floats(0, 1e6)), max_size=80)


@given(values, st.integers(1, 60))
def test_a_sparkline_keeps_the_last_values_in_order(shown: list[float | None], width: int) -> None:
    line = sparkline(shown, width)
    kept = shown[-width:]
    assert len(line) == len(kept)
    assert set(line) <= {*BLOCKS, " "}
    for value, char in zip(kept, line, strict=True):
        assert (char == " ") == (value is None)
    present = [(v, BLOCKS.index(c)) for v, c in zip(kept, line, strict=True) if v is not None]
    # Bigger values never get a lower block, and the largest value (when above zero) is full.
    for value, level in present:
        assert all(level >= other for v, other in present if v < value)
    if present and max(v for v, _ in present) > 0:
        assert max(level for _, level in present) == len(BLOCKS) - 1


def test_a_sparkline_of_zeros_is_flat() -> None:
    assert sparkline([0.0, 0.0, None, 0.0], 10) == "▁▁ ▁"
    assert sparkline([0.0, 2.0, 4.0, 8.0], 10) == "▁▃▅█"
    assert sparkline([5.0, 1.0, 2.0, 3.0], 2) == "▆█"


@given(st.lists(st.sets(st.sampled_from(["a", "b", "c", "d"])), max_size=40), st.integers(2, 10))
def test_history_keeps_every_series_aligned(frames: list[set[str]], length: int) -> None:
    history = History(length)
    for names in frames:
        history.add(dict.fromkeys(names, 1.0))
    for kept in history.values.values():
        assert len(kept) == min(len(frames), length)


def test_series_names_every_queue_and_unit() -> None:
    before = sample(0.0, 0, {}, cpu=1.0)
    after = sample(2.0, 4, {}, cpu=2.0)
    names = series(frame(before, after))
    assert names["requests/s"] == pytest.approx(2.0)
    assert names["cpu web"] == pytest.approx(50.0)
