"""The monitoring that ships in ``appliance/monitoring/``: a Prometheus configuration for one
host, its alert rules and the Grafana dashboards (docs/monitoring.md).

Prometheus scrapes Wingman's ``/metrics`` from loopback (no token needed there) and one exporter
per engine from Debian's packages: ``prometheus-node-exporter``, ``prometheus-postgres-exporter``
and one ``prometheus-redis-exporter`` per Redis role. The defaults are those packages' ports;
the second Redis exporter takes the next one. On the appliance Prometheus and Alertmanager
listen on loopback too (``systemd/wingman-prometheus.service``, ``wingman-alertmanager.service``).
"""

from __future__ import annotations

import socket
from pathlib import Path

import msgspec

from wingman.ops.templates import render
from wingman.resources import shipped_dir

PROMETHEUS_ADDRESS = "127.0.0.1:9090"
ALERTMANAGER_ADDRESS = "127.0.0.1:9093"


class ScrapeTargets(msgspec.Struct, frozen=True, kw_only=True):
    """``host:port`` of each thing Prometheus scrapes."""

    wingman: str = "127.0.0.1:8000"
    node: str = "127.0.0.1:9100"
    postgres: str = "127.0.0.1:9187"
    redis_queue: str = "127.0.0.1:9121"
    redis_cache: str = "127.0.0.1:9122"


def monitoring_dir() -> Path:
    return shipped_dir("appliance") / "monitoring"


def alert_rules() -> Path:
    return monitoring_dir() / "alerts.yml"


def dashboards() -> list[Path]:
    """The Grafana dashboards (JSON), one per view: service, host, engines."""
    return sorted((monitoring_dir() / "dashboards").glob("*.json"))


def prometheus_config(
    targets: ScrapeTargets,
    *,
    rules: Path | None = None,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    host: str | None = None,
    alertmanager: str | None = None,
) -> str:
    """``prometheus.yml`` scraping ``targets``, evaluating the alert rules and sending firing
    alerts to the Alertmanager at ``alertmanager`` (``host:port``; None: to none)."""
    return render(
        "monitoring/prometheus.yml.tmpl",
        {
            **msgspec.structs.asdict(targets),
            "rules": rules or alert_rules(),
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "host": host or socket.gethostname(),
            "alertmanagers": f'"{alertmanager}"' if alertmanager else "",
        },
    )
