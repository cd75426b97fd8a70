"""Latency histograms that merge exactly: what K generator processes report and add up.

Each generator records its latencies in an HDR histogram (HdrHistogram's log-linear buckets,
package ``hdrhistogram``) and sends it, encoded, to the coordinator, which adds bucket counts.
The merged histogram is exactly the one that recording every sample in one process would have
made, so the percentiles of a run do not depend on how its users were split (averaging the
generators' own percentiles would).

Precision: values are recorded in whole microseconds, rounded up, with two significant decimal
digits: 128 linear sub-buckets per power of two, so a bucket is at most 1/128 (0.8 %) of its
values wide. A reported percentile is the upper edge of the bucket that holds the nearest-rank
sample, so it is never below the exact nearest-rank value and at most 1 % + 1 µs above it. The
maximum is kept exactly beside the buckets.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from hdrh.histogram import HdrHistogram

# Two significant digits: every bucket is at most 1/128 of its values wide (stated as 1 %).
SIGNIFICANT_FIGURES = 2
RELATIVE_PRECISION = 0.01
# 1 µs to 1 hour (nothing the harness times waits longer; larger values are counted at 1 h).
LOWEST_US = 1
HIGHEST_US = 3_600_000_000


class EncodedHistogram(msgspec.Struct, frozen=True):
    """A histogram on the wire between a generator and the coordinator."""

    buckets: str
    max_ms: float


class LatencyHistogram:
    """Milliseconds in log-linear buckets; :meth:`merge` adds bucket counts."""

    def __init__(self) -> None:
        self._hdr = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        self.max_ms: float | None = None

    @property
    def count(self) -> int:
        return int(self._hdr.get_total_count())

    def record(self, milliseconds: float) -> None:
        micros = min(HIGHEST_US, max(0, math.ceil(milliseconds * 1000)))
        self._hdr.record_value(micros)
        self.max_ms = milliseconds if self.max_ms is None else max(self.max_ms, milliseconds)

    def merge(self, other: LatencyHistogram) -> None:
        if other.count == 0:
            return
        self._hdr.add(other._hdr)
        if other.max_ms is not None:
            self.max_ms = other.max_ms if self.max_ms is None else max(self.max_ms, other.max_ms)

    def bucket_counts(self) -> dict[int, int]:
        """Non-empty buckets by index: two histograms are equal when these are."""
        counts: dict[int, int] = {}
        for index in range(self._hdr.counts_len):
            found = int(self._hdr.get_count_at_index(index))
            if found:
                counts[index] = found
        return counts

    def percentile(self, pct: float) -> float | None:
        """Nearest-rank percentile in ms: the upper edge of the bucket holding that sample."""
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(pct / 100 * total))
        seen = 0
        for index in range(self._hdr.counts_len):
            seen += int(self._hdr.get_count_at_index(index))
            if seen >= rank:
                value = self._hdr.get_value_from_index(index)
                return float(self._hdr.get_highest_equivalent_value(value)) / 1000
        raise AssertionError("rank beyond the total count")  # pragma: no cover

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50_ms": _round(self.percentile(50)),
            "p95_ms": _round(self.percentile(95)),
            "p99_ms": _round(self.percentile(99)),
            "max_ms": _round(self.max_ms),
        }

    def encode(self) -> EncodedHistogram:
        return EncodedHistogram(
            buckets=self._hdr.encode().decode("ascii") if self.count else "",
            max_ms=self.max_ms if self.max_ms is not None else -1.0,
        )

    @classmethod
    def decode(cls, encoded: EncodedHistogram) -> LatencyHistogram:
        histogram = cls()
        if encoded.buckets:
            histogram._hdr.decode_and_add(encoded.buckets.encode("ascii"))
            histogram.max_ms = encoded.max_ms
        return histogram


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
