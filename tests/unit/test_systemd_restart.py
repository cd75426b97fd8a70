"""Every long-running unit comes back by itself after a crash or a kill -9, and never gives up."""

from __future__ import annotations

from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
LONG_RUNNING = {
    "wingman-web.service": "always",
    "wingman-proxy.service": "always",
    "wingman-worker@.service": "always",
    "wingman-redis@.service": "on-failure",
    "wingman-prometheus.service": "always",
    "wingman-alertmanager.service": "always",
    "wingman-node-exporter.service": "always",
    "wingman-postgres-exporter.service": "always",
    "wingman-redis-exporter@.service": "always",
    "postgresql@15-main.service.d/wingman.conf": "on-failure",
}


def directives(path: Path) -> dict[tuple[str, str], str]:
    """(section, key) -> the last value, as systemd reads a unit (later lines win)."""
    found: dict[tuple[str, str], str] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        else:
            key, _, value = line.partition("=")
            found[(section, key)] = value
    return found


@pytest.mark.parametrize(("unit", "restart"), sorted(LONG_RUNNING.items()))
def test_a_crashed_service_is_restarted_without_a_start_limit(unit: str, restart: str) -> None:
    found = directives(SYSTEMD / unit)
    assert found[("Service", "Restart")] == restart
    assert 1 <= float(found[("Service", "RestartSec")]) <= 5
    # systemd's default (5 starts within 10 s) leaves a unit failed after a short crash loop.
    assert found[("Unit", "StartLimitIntervalSec")] == "0"


def test_every_service_of_the_target_is_covered() -> None:
    services = {p.name for p in SYSTEMD.glob("*.service")}
    oneshots = {
        name
        for name in services
        if ("Service", "Type") in directives(SYSTEMD / name)
        and directives(SYSTEMD / name)[("Service", "Type")] == "oneshot"
    }
    assert services - oneshots <= set(LONG_RUNNING)
