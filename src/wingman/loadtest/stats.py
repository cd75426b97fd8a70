"""Latency histograms and error counts of one load run, and the percentiles reported from them."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec

from wingman.loadtest.histogram import EncodedHistogram, LatencyHistogram


def percentile(values: list[float], pct: float) -> float | None:
    """Exact nearest-rank percentile (no interpolation): what a histogram's percentile is within
    its stated precision of."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class EncodedRecorder(msgspec.Struct, frozen=True):
    """One generator's measurements on the wire to the coordinator."""

    histograms: dict[str, EncodedHistogram]
    errors: dict[str, int]


@dataclass
class Recorder:
    """Latencies per request kind, and errors by kind, collected by every simulated user."""

    histograms: dict[str, LatencyHistogram] = field(
        default_factory=lambda: defaultdict(LatencyHistogram)
    )
    errors: Counter[str] = field(default_factory=Counter)
    # Only samples taken while ``measuring`` count (the ramp-up is not measured).
    measuring: bool = False

    def observe(self, kind: str, milliseconds: float) -> None:
        if self.measuring:
            self.histograms[kind].record(milliseconds)

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def summary(self, kind: str) -> dict[str, Any]:
        return self.histograms.get(kind, LatencyHistogram()).summary()

    def combined(self, kinds: tuple[str, ...]) -> LatencyHistogram:
        """One histogram of every sample of ``kinds`` (the REST budget's population)."""
        merged = LatencyHistogram()
        for kind in kinds:
            if kind in self.histograms:
                merged.merge(self.histograms[kind])
        return merged

    def merge(self, other: Recorder) -> None:
        for kind, histogram in other.histograms.items():
            self.histograms[kind].merge(histogram)
        self.errors.update(other.errors)

    def encode(self) -> EncodedRecorder:
        return EncodedRecorder(
            histograms={kind: h.encode() for kind, h in self.histograms.items()},
            errors=dict(self.errors),
        )

    @classmethod
    def decode(cls, encoded: EncodedRecorder) -> Recorder:
        recorder = cls()
        for kind, histogram in encoded.histograms.items():
            recorder.histograms[kind] = LatencyHistogram.decode(histogram)
        recorder.errors.update(encoded.errors)
        return recorder
