"""The figures of ``wingmanctl top``, without I/O: one sample, the rates between two, sparklines.

A :class:`Sample` is what one look at the stack sees: the totals of Wingman's ``/metrics``
(counters and histogram buckets only grow, so they mean nothing alone) and the CPU seconds
each process tree has used so far (from ``/proc``). A :class:`Frame` is what the operator reads:
the rates between two samples, latency percentiles of the requests answered in between, and the
gauges of the newer one.

- **users online**: ``wingman_websocket_connections`` (each signed-in app holds one socket);
- **replies in flight**: jobs of the ``ai`` queue that are queued or active, one per reply not
  yet finished (``wingman_queue_depth``);
- **CPU**: of each unit's whole process tree, so Granian's workers count towards ``web`` and
  PostgreSQL's backends towards ``postgres``; 100 % is one core.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from wingman.ops.metrics import quantile, scrape_of

QUEUE_DEPTH = "wingman_queue_depth"
IN_FLIGHT = "wingman_requests_in_flight"
REPLY_QUEUE = "ai"
BLOCKS = "▁▂▃▄▅▆▇█"


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One look at the stack, at ``at`` seconds of a monotonic clock."""

    at: float
    requests: float
    errors: float
    # Cumulative request-duration buckets summed over every route: upper bound -> count.
    buckets: dict[float, float]
    websockets: float | None
    requests_in_flight: float | None
    # queue -> state (queued, active, scheduled) -> jobs
    queues: dict[str, dict[str, float]]
    # unit (web, worker-ai, postgres, ...) -> CPU seconds its process tree has used
    cpu_seconds: dict[str, float]


class Frame(msgspec.Struct, frozen=True, kw_only=True):
    """What the operator reads: rates over ``window_s`` and the newer sample's gauges."""

    window_s: float
    requests_per_s: float
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    users_online: float | None
    requests_in_flight: float | None
    replies_in_flight: float | None
    queues: dict[str, dict[str, float]]
    cpu_percent: dict[str, float | None]


def parse_sample(text: str, at: float, cpu_seconds: dict[str, float]) -> Sample:
    """A sample from one ``/metrics`` exposition (raises ValueError when it is not one)."""
    families = list(text_string_to_metric_families(text))
    scrape = scrape_of(families)
    in_flight: float | None = None
    queues: dict[str, dict[str, float]] = {}
    for family in families:
        for point in family.samples:
            if point.name == IN_FLIGHT:
                in_flight = (in_flight or 0.0) + point.value
            elif point.name == QUEUE_DEPTH:
                states = queues.setdefault(point.labels["queue"], {})
                states[point.labels["state"]] = point.value
    if in_flight is not None:
        # The scrape that produced this text counts itself: leave it out.
        in_flight = max(0.0, in_flight - 1)
    return Sample(
        at=at,
        requests=scrape.requests,
        errors=scrape.errors,
        buckets=scrape.buckets,
        websockets=scrape.websockets,
        requests_in_flight=in_flight,
        queues=queues,
        cpu_seconds=cpu_seconds,
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def frame(before: Sample, after: Sample) -> Frame:
    """The rates between two samples. A web server that restarted in between (its counters went
    down) is counted from zero, and no rate is ever negative."""
    window = max(after.at - before.at, 1e-9)
    restarted = after.requests < before.requests
    base_requests = 0.0 if restarted else before.requests
    base_errors = 0.0 if restarted else before.errors
    base_buckets = {} if restarted else before.buckets
    requests = max(0.0, after.requests - base_requests)
    errors = max(0.0, after.errors - base_errors)
    delta = {b: max(0.0, c - base_buckets.get(b, 0.0)) for b, c in after.buckets.items()}
    replies = after.queues.get(REPLY_QUEUE)
    cpu: dict[str, float | None] = {}
    for unit, used in after.cpu_seconds.items():
        earlier = before.cpu_seconds.get(unit)
        cpu[unit] = None if earlier is None else max(0.0, 100 * (used - earlier) / window)
    return Frame(
        window_s=window,
        requests_per_s=requests / window,
        error_rate=errors / requests if requests > 0 else None,
        p50_ms=_ms(quantile(delta, 0.5)),
        p95_ms=_ms(quantile(delta, 0.95)),
        users_online=after.websockets,
        requests_in_flight=after.requests_in_flight,
        replies_in_flight=(
            None if replies is None else replies.get("queued", 0.0) + replies.get("active", 0.0)
        ),
        queues=after.queues,
        cpu_percent=cpu,
    )


def sparkline(values: Sequence[float | None], width: int) -> str:
    """The last ``width`` values as block characters scaled from zero to their maximum; a
    missing value is a blank."""
    shown = list(values)[-width:] if width > 0 else []
    present = [max(0.0, v) for v in shown if v is not None]
    top = max(present, default=0.0)
    chars = []
    for value in shown:
        if value is None:
            chars.append(" ")
        elif top <= 0:
            chars.append(BLOCKS[0])
        else:
            chars.append(BLOCKS[round(max(0.0, value) / top * (len(BLOCKS) - 1))])
    return "".join(chars)


def series(current: Frame) -> dict[str, float | None]:
    """The figures a sparkline follows, by row name."""
    rows: dict[str, float | None] = {
        "requests/s": current.requests_per_s,
        "latency p50 ms": current.p50_ms,
        "latency p95 ms": current.p95_ms,
        "users online": current.users_online,
        "requests in flight": current.requests_in_flight,
        "replies in flight": current.replies_in_flight,
    }
    for queue, states in sorted(current.queues.items()):
        rows[f"queue {queue}"] = states.get("queued", 0.0) + states.get("active", 0.0)
    for unit, percent in current.cpu_percent.items():
        rows[f"cpu {unit}"] = percent
    return rows


class History:
    """The last ``length`` values of every series; a series that appears late is padded with
    blanks so that all sparklines line up in time."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.frames = 0
        self.values: dict[str, deque[float | None]] = {}

    def add(self, figures: dict[str, float | None]) -> None:
        for name in figures.keys() - self.values.keys():
            self.values[name] = deque([None] * min(self.frames, self.length), maxlen=self.length)
        for name, kept in self.values.items():
            kept.append(figures.get(name))
        self.frames += 1

    def sparklines(self, names: Iterable[str]) -> dict[str, str]:
        return {name: sparkline(list(self.values.get(name, ())), self.length) for name in names}
