"""Pure parts of the ops commands: metrics arithmetic, systemd parsing, verdicts, layouts."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wingman.devstack.stack import DevStack
from wingman.ops.health import StatusRow, human_duration, overall
from wingman.ops.metrics import Scrape, figures, parse_scrape, quantile
from wingman.ops.units import (
    APPLIANCE_UNIT_NAMES,
    UNIT_NAMES,
    DevUnits,
    SettingsOnly,
    SystemdUnits,
    parse_systemctl_show,
    select_units,
    systemd_unit_names,
    unit_state,
)

EXPOSITION = """\
# HELP wingman_requests_total Total requests.
# TYPE wingman_requests_total counter
wingman_requests_total{method="GET",path="/a",status_code="200"} 90
wingman_requests_total{method="GET",path="/b",status_code="503"} 10
# TYPE wingman_request_duration_seconds histogram
wingman_request_duration_seconds_bucket{path="/a",le="0.1"} 80
wingman_request_duration_seconds_bucket{path="/a",le="0.5"} 90
wingman_request_duration_seconds_bucket{path="/a",le="+Inf"} 90
wingman_request_duration_seconds_bucket{path="/b",le="0.1"} 0
wingman_request_duration_seconds_bucket{path="/b",le="0.5"} 10
wingman_request_duration_seconds_bucket{path="/b",le="+Inf"} 10
wingman_request_duration_seconds_count{path="/a"} 90
wingman_request_duration_seconds_sum{path="/a"} 3.0
# TYPE wingman_websocket_connections gauge
wingman_websocket_connections 42
"""


def test_parse_scrape_sums_label_sets() -> None:
    scrape = parse_scrape(EXPOSITION)
    assert scrape.requests == 100
    assert scrape.errors == 10
    assert scrape.buckets == {0.1: 80, 0.5: 100, math.inf: 100}
    assert scrape.websockets == 42


def test_figures_over_a_window() -> None:
    before = Scrape(
        requests=100, errors=10, buckets={0.1: 80, 0.5: 100, math.inf: 100}, websockets=1
    )
    after = Scrape(
        requests=200, errors=15, buckets={0.1: 160, 0.5: 200, math.inf: 200}, websockets=3
    )
    found = figures(before, after, 10.0)
    assert found.requests_per_s == 10.0
    assert found.error_rate == 0.05
    # 95th of 100 new requests: 80 under 0.1 s, 20 in (0.1, 0.5]: 0.1 + 0.4 * 15/20.
    assert found.p95_ms is not None
    assert math.isclose(found.p95_ms, 400.0)
    assert found.websockets == 3


def test_figures_after_a_restart_use_the_new_counters() -> None:
    before = Scrape(requests=500, errors=0, buckets={math.inf: 500}, websockets=None)
    after = Scrape(requests=20, errors=2, buckets={0.1: 20, math.inf: 20}, websockets=None)
    found = figures(before, after, 2.0)
    assert found.requests_per_s == 10.0
    assert found.error_rate == 0.1


def test_no_requests_means_no_latency_and_no_error_rate() -> None:
    same = Scrape(requests=5, errors=0, buckets={0.1: 5, math.inf: 5}, websockets=None)
    found = figures(same, same, 5.0)
    assert (found.requests_per_s, found.p95_ms, found.error_rate) == (0.0, None, None)


bounds = st.lists(st.floats(0.001, 100), min_size=1, max_size=8, unique=True).map(sorted)


@example(upper=[34.99602870920509], increments=[119, 119, 0, 0, 0, 0, 0, 0, 0], q=0.5)
@given(bounds, st.lists(st.integers(0, 1000), min_size=9, max_size=9), st.floats(0.01, 1.0))
def test_quantile_lies_within_the_buckets(
    upper: list[float], increments: list[int], q: float
) -> None:
    counts, total = {}, 0
    for bound, increment in zip([*upper, math.inf], increments, strict=False):
        total += increment
        counts[bound] = float(total)
    value = quantile(counts, q)
    if counts[math.inf] == 0:
        assert value is None
        return
    assert value is not None
    assert 0 <= value <= upper[-1]
    assert value <= (quantile(counts, min(1.0, q + 0.01)) or 0) + 1e-9


SHOW = """\
Id=wingman-web.service
MainPID=1234
ActiveState=active
ActiveEnterTimestampMonotonic=5000000
MemoryCurrent=104857600

Id=wingman-worker@ai.service
MainPID=0
ActiveState=failed
ActiveEnterTimestampMonotonic=0
MemoryCurrent=[not set]

Id=wingman-redis@cache.service
MainPID=77
ActiveState=active
ActiveEnterTimestampMonotonic=1000000
MemoryCurrent=18446744073709551615
"""


def test_systemctl_show_parsing() -> None:
    props = parse_systemctl_show(SHOW)
    assert set(props) == {
        "wingman-web.service",
        "wingman-worker@ai.service",
        "wingman-redis@cache.service",
    }
    web = unit_state("web", "wingman-web.service", props["wingman-web.service"], 65.0)
    assert (web.up, web.pid, web.uptime_s, web.memory_bytes) == (True, 1234, 60.0, 100 * 2**20)
    worker = unit_state("worker-ai", "x", props["wingman-worker@ai.service"], 65.0)
    assert (worker.up, worker.pid, worker.memory_bytes) == (False, None, None)
    cache = unit_state("redis-cache", "x", props["wingman-redis@cache.service"], 65.0)
    assert cache.up
    assert cache.memory_bytes is None  # systemd's "unset" value is not a size


def test_systemd_unit_names() -> None:
    names = systemd_unit_names(15)
    assert names["postgres"] == "postgresql@15-main.service"
    assert names["worker-heavy"] == "wingman-worker@heavy.service"
    assert names["redis-queue"] == "wingman-redis@queue.service"
    assert names["proxy"] == "wingman-proxy.service"
    assert len(names) == 8
    # What the appliance reports is exactly what it reads from systemd, in the same order.
    assert tuple(names) == SystemdUnits.unit_names == APPLIANCE_UNIT_NAMES


def test_only_the_appliance_has_the_front_proxy(tmp_path: Path) -> None:
    assert "proxy" in APPLIANCE_UNIT_NAMES
    assert "proxy" not in UNIT_NAMES
    assert "proxy" not in DevUnits.unit_names
    assert SettingsOnly.unit_names == ()
    # A development stack (here one never started) reports its seven units, none of them proxy.
    dev = DevUnits(DevStack(tmp_path / "var"))
    assert [unit.name for unit in dev.units()] == list(UNIT_NAMES)
    assert not any("proxy" in arg for arg in dev.log_command(None, 10, follow=False))


def test_logs_of_the_proxy_read_its_journal_on_the_appliance_only(tmp_path: Path) -> None:
    appliance = SystemdUnits()
    one = appliance.log_command("proxy", 20, follow=True)
    assert one == ["journalctl", "--no-pager", "-n", "20", "-f", "-u", "wingman-proxy.service"]
    every = appliance.log_command(None, 20, follow=False)
    assert every[every.index("wingman-proxy.service") - 1] == "-u"
    dev = DevUnits(DevStack(tmp_path / "var"))
    with pytest.raises(LookupError, match=r"no proxy unit .* appliance only"):
        dev.log_command("proxy", 20, follow=False)


def test_the_boot_check_expects_every_appliance_unit_in_the_status() -> None:
    path = Path(__file__).parents[2] / "appliance" / "bootcheck.py"
    spec = importlib.util.spec_from_file_location("wingman_bootcheck", path)
    assert spec is not None
    assert spec.loader is not None
    bootcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootcheck)
    assert bootcheck.STATUS_UNITS == APPLIANCE_UNIT_NAMES


def _row(group: str, name: str, state: str) -> StatusRow:
    return StatusRow(group=group, name=name, state=state, value="")  # type: ignore[arg-type]


def test_overall_verdicts() -> None:
    healthy = [_row("units", "web", "ok"), _row("web", "p95", "n/a")]
    assert overall(healthy) == "healthy"
    assert overall([*healthy, _row("units", "worker-ai", "fail")]) == "degraded"
    assert overall([*healthy, _row("disk", "/", "warn")]) == "degraded"
    assert overall([*healthy, _row("units", "redis-cache", "fail")]) == "down"
    # Every request passes the appliance's front proxy: without it no client is served.
    assert overall([*healthy, _row("units", "proxy", "fail")]) == "down"
    assert overall([*healthy, _row("postgres", "server", "fail")]) == "down"


def test_layout_selection(tmp_path: Path) -> None:
    appliance = tmp_path / "wingman.toml"
    assert isinstance(select_units(tmp_path / "var", appliance, {}), DevUnits)
    assert isinstance(select_units(None, appliance, {"WINGMAN_CONFIG": "x"}), SettingsOnly)
    dev = select_units(None, appliance, {})
    assert isinstance(dev, DevUnits)
    assert dev.stack.root == Path("var").resolve()
    appliance.write_text("")
    assert isinstance(select_units(None, appliance, {}), SystemdUnits)
    # An explicit data folder wins over the appliance.
    assert isinstance(select_units(tmp_path / "var", appliance, {}), DevUnits)


def test_human_duration() -> None:
    assert human_duration(5) == "5s"
    assert human_duration(125) == "2m 5s"
    assert human_duration(3 * 3600 + 120) == "3h 2m"
    assert human_duration(2 * 86400 + 3600) == "2d 1h"
