"""Latency samples and error counts of one load run, and the percentiles reported from them."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every reported figure was observed)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Recorder:
    """Milliseconds per request kind, and errors by kind, collected by every simulated user."""

    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    # Only samples taken while ``measuring`` count (the ramp-up is not measured).
    measuring: bool = False

    def observe(self, kind: str, milliseconds: float) -> None:
        if self.measuring:
            self.samples[kind].append(milliseconds)

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def summary(self, kind: str) -> dict[str, float | int | None]:
        values = self.samples.get(kind, [])
        return {
            "count": len(values),
            "p50_ms": _round(percentile(values, 50)),
            "p95_ms": _round(percentile(values, 95)),
            "p99_ms": _round(percentile(values, 99)),
            "max_ms": _round(max(values) if values else None),
        }

    def rest_values(self, kinds: tuple[str, ...]) -> list[float]:
        return [v for kind in kinds for v in self.samples.get(kind, [])]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
