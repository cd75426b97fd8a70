"""The alert rules and dashboards name only metrics Wingman really exposes.

A misspelt ``wingman_*`` name would give an alert that never fires or a panel that stays empty
without any error, so every one is checked against the metric definitions.
"""

from __future__ import annotations

import re

from prometheus_client.metrics import MetricWrapperBase

from wingman.ops.monitoring import alert_rules, dashboards
from wingman.server import metrics

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exposed_names() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def test_every_wingman_metric_named_exists() -> None:
    exposed = exposed_names()
    assert "wingman_queue_oldest_seconds" in exposed
    used: set[str] = set()
    for path in [alert_rules(), *dashboards()]:
        named = set(re.findall(r"\bwingman_[a-z_]+", path.read_text()))
        assert named <= exposed, (path.name, sorted(named - exposed))
        used |= named
    # The rules and the service dashboard between them use most of what is exposed.
    assert len(used) >= 15, sorted(used)


def test_three_dashboards_ship() -> None:
    assert [path.name for path in dashboards()] == [
        "wingman-engines.json",
        "wingman-host.json",
        "wingman-service.json",
    ]
