"""The appliance's monitoring units: part of the target, hardened, on loopback only, and in
agreement with the ports Prometheus scrapes and the files ``wingmanctl tune`` renders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.test_systemd_restart import SYSTEMD, directives
from wingman.ops.monitoring import ALERTMANAGER_ADDRESS, PROMETHEUS_ADDRESS, ScrapeTargets
from wingman.ops.tune_appliance import MONITORING_UNITS

UNITS = {
    "wingman-prometheus.service": PROMETHEUS_ADDRESS,
    "wingman-alertmanager.service": ALERTMANAGER_ADDRESS,
    "wingman-node-exporter.service": ScrapeTargets().node,
    "wingman-postgres-exporter.service": ScrapeTargets().postgres,
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "PrivateTmp": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictNamespaces": "yes",
    "SystemCallArchitectures": "native",
}


def exec_start(unit: str) -> str:
    """ExecStart with its continuation lines joined."""
    text = (SYSTEMD / unit).read_text().replace("\\\n", " ")
    found = re.search(r"^ExecStart=(.*)$", text, re.MULTILINE)
    assert found, unit
    return " ".join(found.group(1).split())


@pytest.mark.parametrize("unit", [*UNITS, "wingman-redis-exporter@.service"])
def test_unit_is_hardened_and_never_root(unit: str) -> None:
    found = directives(SYSTEMD / unit)
    for key, value in HARDENING.items():
        assert found[("Service", key)] == value, (unit, key)
    assert found[("Service", "User")] in {"prometheus", "postgres"}
    assert found[("Unit", "PartOf")] == "wingman.target"


@pytest.mark.parametrize(("unit", "address"), sorted(UNITS.items()))
def test_unit_listens_on_loopback_where_prometheus_looks(unit: str, address: str) -> None:
    command = exec_start(unit)
    listens = re.findall(r"--web\.listen-address=(\S+)", command)
    assert listens == [address], command
    assert address.startswith("127.0.0.1:")


def test_alertmanager_opens_no_cluster_port() -> None:
    # Its default gossips on 0.0.0.0:9094; empty turns clustering off.
    assert "--cluster.listen-address= " in exec_start("wingman-alertmanager.service") + " "


def test_redis_exporters_read_what_tune_renders() -> None:
    found = directives(SYSTEMD / "wingman-redis-exporter@.service")
    assert found[("Service", "EnvironmentFile")] == "/etc/wingman/redis-exporter-%i.env"
    assert exec_start("wingman-redis-exporter@.service") == "/usr/bin/prometheus-redis-exporter"


def test_prometheus_reads_tuned_config_and_retention() -> None:
    command = exec_start("wingman-prometheus.service")
    assert "--config.file=/etc/wingman/prometheus.yml" in command
    assert "--storage.tsdb.retention.size=${PROMETHEUS_RETENTION_SIZE}" in command
    assert "--storage.tsdb.retention.time=${PROMETHEUS_RETENTION_TIME}" in command
    found = directives(SYSTEMD / "wingman-prometheus.service")
    assert found[("Service", "EnvironmentFile")] == "/etc/wingman/monitoring.env"
    # The data volume keeps the history.
    assert found[("Service", "StateDirectory")] == "wingman/prometheus"


def test_target_wants_every_monitoring_unit_and_tune_renders_first() -> None:
    text = (SYSTEMD / "wingman.target").read_text()
    wanted = {w for line in re.findall(r"^Wants=(.*)$", text, re.MULTILINE) for w in line.split()}
    instances = {"wingman-redis-exporter@queue.service", "wingman-redis-exporter@cache.service"}
    assert set(UNITS) | instances <= wanted
    tune = (SYSTEMD / "wingman-tune.service").read_text()
    before = {w for line in re.findall(r"^Before=(.*)$", tune, re.MULTILINE) for w in line.split()}
    # Every unit reading a rendered file starts after it is written.
    assert set(MONITORING_UNITS.values()) <= before
    for unit in MONITORING_UNITS.values():
        assert (SYSTEMD / re.sub(r"@\w+\.", "@.", unit)).is_file(), unit


def test_units_exist_for_every_unit_name_used() -> None:
    for unit in UNITS:
        assert Path(SYSTEMD / unit).is_file()
