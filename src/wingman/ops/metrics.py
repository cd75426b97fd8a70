"""Web figures for ``wingmanctl status`` from the web server's Prometheus ``/metrics``.

Counters only say what happened since a process started, so the rates come from two scrapes a
short window apart. The names are defined in :mod:`wingman.server.metrics` (docs/metrics.md):

- ``wingman_requests_total`` (counter, label ``status_code``);
- ``wingman_request_duration_seconds`` (histogram);
- ``wingman_websocket_connections`` (gauge).

When nothing answers on ``/metrics`` the figures are simply absent, never invented.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import httpx
import msgspec
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "wingman_requests"
DURATION = "wingman_request_duration_seconds"
WEBSOCKETS = "wingman_websocket_connections"


class Scrape(msgspec.Struct, frozen=True):
    """The few totals status needs from one scrape."""

    requests: float
    errors: float
    # Cumulative histogram buckets: upper bound -> count.
    buckets: dict[float, float]
    websockets: float | None


class WebFigures(msgspec.Struct, frozen=True, kw_only=True):
    window_s: float
    requests_per_s: float
    p95_ms: float | None
    error_rate: float | None
    websockets: float | None


def parse_scrape(text: str) -> Scrape:
    """Sum the counters over all label sets (every path and method) of one exposition."""
    return scrape_of(text_string_to_metric_families(text))


def scrape_of(families: Iterable[Metric]) -> Scrape:
    """:func:`parse_scrape` of already parsed families (so other readers parse the text once)."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    websockets: float | None = None
    for family in families:
        for sample in family.samples:
            if family.name == REQUESTS and sample.name == f"{REQUESTS}_total":
                requests += sample.value
                if sample.labels.get("status_code", "").startswith("5"):
                    errors += sample.value
            elif family.name == DURATION and sample.name == f"{DURATION}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif family.name == WEBSOCKETS and sample.name == WEBSOCKETS:
                websockets = (websockets or 0.0) + sample.value
    return Scrape(requests=requests, errors=errors, buckets=buckets, websockets=websockets)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus's ``histogram_quantile``: linear interpolation inside the matching bucket."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            share = (rank - lower_count) / (count - lower_count)
            # Within the bucket even where the float arithmetic rounds up past its bound.
            return min(bound, lower_bound + (bound - lower_bound) * share)
        lower_bound, lower_count = bound, count
    return lower_bound


def figures(before: Scrape, after: Scrape, window_s: float) -> WebFigures:
    """Rates over the window between two scrapes (a restarted process resets to ``after``)."""
    reset = after.requests < before.requests
    base = Scrape(0.0, 0.0, {}, None) if reset else before
    requests = after.requests - base.requests
    errors = after.errors - base.errors
    delta = {b: c - base.buckets.get(b, 0.0) for b, c in after.buckets.items()}
    p95 = quantile(delta, 0.95)
    return WebFigures(
        window_s=window_s,
        requests_per_s=requests / window_s if window_s > 0 else 0.0,
        p95_ms=None if p95 is None else p95 * 1000,
        error_rate=errors / requests if requests > 0 else None,
        websockets=after.websockets,
    )


def fetch(url: str, timeout: float = 3.0) -> str | None:
    """The exposition text, or None when no metrics endpoint answers."""
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return response.text


def sample(url: str, window_s: float) -> WebFigures | None:
    """Two scrapes ``window_s`` apart, or None when ``/metrics`` does not answer (or is not
    Prometheus text)."""
    first = fetch(url)
    if first is None:
        return None
    started = time.monotonic()
    time.sleep(window_s)
    second = fetch(url)
    if second is None:
        return None
    try:
        before, after = parse_scrape(first), parse_scrape(second)
    except ValueError:
        return None
    return figures(before, after, time.monotonic() - started)
