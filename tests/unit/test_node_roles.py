"""Node roles: the settings, the plan each role gets for its host, and which units start."""

from __future__ import annotations

import configparser
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.cli import bad_settings_env, run_cli
from wingman.config import SettingsError, parse_settings
from wingman.ops.node_roles import APP_UNITS, COMMON_UNITS, DATA_UNITS, units_for
from wingman.tuning.plan import OS_HEADROOM_FRACTION, HostFacts, plan_for
from wingman.tuning.rows import plan_rows

GIB = 1024
hosts = st.builds(
    HostFacts,
    cores=st.integers(min_value=2, max_value=128),
    ram_mb=st.integers(min_value=2 * GIB, max_value=1024 * GIB),
    disk=st.sampled_from(["ssd", "hdd"]),
)
SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"


def test_role_is_checked() -> None:
    assert parse_settings({"node": {"role": "app"}}).node.role == "app"
    with pytest.raises(SettingsError, match=r"node\.role"):
        parse_settings({"node": {"role": "web"}})
    with pytest.raises(SettingsError, match=r"node\.address"):
        parse_settings({"node": {"address": "10.0.0.5"}})
    with pytest.raises(SettingsError, match=r"node\.name"):
        parse_settings({"node": {"name": "a b"}})


@given(hosts)
def test_app_node_gives_the_host_to_web_and_workers(host: HostFacts) -> None:
    plan = plan_for(host, "app")
    mem = plan.memory
    assert mem.postgres_mb.value == mem.redis_mb.value == 0
    headroom = math.ceil(host.ram_mb * OS_HEADROOM_FRACTION)
    assert mem.web_mb.value + mem.workers_mb.value + headroom <= host.ram_mb
    # Never fewer web workers than the same host running everything.
    assert plan.app.web_workers.value >= plan_for(host).app.web_workers.value
    settings = {row.setting.split(".")[0] for row in plan_rows(plan)}
    assert "postgres" not in settings
    assert "redis" not in settings
    assert "server" in settings


@given(hosts, st.integers(min_value=1, max_value=8))
def test_data_node_gives_the_host_to_postgres_and_redis(host: HostFacts, app_nodes: int) -> None:
    plan = plan_for(host, "data", app_nodes)
    mem = plan.memory
    assert mem.web_mb.value == mem.workers_mb.value == 0
    assert mem.postgres_mb.value + mem.redis_mb.value <= host.ram_mb * (1 - OS_HEADROOM_FRACTION)
    # More than the half an all-in-one host gives it.
    assert mem.postgres_mb.value > plan_for(host).memory.postgres_mb.value
    # Every app node's pools fit, with the admin reserve.
    app = plan_for(host, "app").app
    needed = app.peak_connections * app_nodes + app.connection_reserve.value
    assert plan.postgres.max_connections.value >= needed
    settings = {row.setting.split(".")[0] for row in plan_rows(plan)}
    assert "server" not in settings
    assert "worker" not in settings
    assert "postgres" in settings


def _tune(tmp_path: Path, role: str, target: Path) -> dict[str, object]:
    env = bad_settings_env(tmp_path, f'[node]\nrole = "{role}"\n')
    result = run_cli(
        "wingman.ctl",
        "tune",
        *("--cores", "4", "--ram", "8", "--disk", "ssd", "--apply", "--json"),
        *("--target-dir", str(target)),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_tune_writes_what_each_role_runs(tmp_path: Path) -> None:
    target = tmp_path / "etc"
    report = _tune(tmp_path, "app", target)
    assert sorted(p.name for p in target.iterdir()) == ["no-data", "tuning.toml"]
    plan = {row["setting"]: row["value"] for row in report["plan"]}  # type: ignore[attr-defined]
    assert plan["node.role"] == "app"
    assert "wingman-redis@queue.service" in plan["node.skipped_units"]
    assert not any(name.startswith("postgres.") for name in plan)

    # The same host turned into a data node: the app's marker goes, the data's configs come.
    _tune(tmp_path, "data", target)
    names = {p.name for p in target.iterdir()}
    assert {"no-app", "redis-queue.conf", "redis-cache.conf", "tuning.toml"} <= names
    assert "no-data" not in names
    assert "wingman-web.service" in (target / "no-app").read_text()

    # Back to all-in-one: no marker, every unit starts.
    _tune(tmp_path, "all-in-one", target)
    assert not {"no-app", "no-data"} & {p.name for p in target.iterdir()}


def _unit(name: str) -> configparser.ConfigParser:
    """The unit file (or, for the distribution's PostgreSQL unit, Wingman's drop-in)."""
    if name.startswith("postgresql@"):
        path = SYSTEMD / f"{name}.d" / "wingman.conf"
    else:
        template = name.split("@", maxsplit=1)[0] + "@.service" if "@" in name else name
        path = SYSTEMD / template
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


@pytest.mark.parametrize(
    ("units", "condition"),
    [
        (APP_UNITS, "!/etc/wingman/no-app"),
        (DATA_UNITS, "!/etc/wingman/no-data"),
        (COMMON_UNITS, None),
    ],
)
def test_units_start_only_where_their_role_needs_them(
    units: tuple[str, ...], condition: str | None
) -> None:
    for name in units:
        unit = _unit(name)["Unit"]
        assert unit.get("ConditionPathExists") == condition, name


def test_the_target_pulls_every_unit_of_an_all_in_one_node() -> None:
    target = (SYSTEMD / "wingman.target").read_text()
    wanted = {
        unit
        for line in target.splitlines()
        if line.startswith("Wants=")
        for unit in line.removeprefix("Wants=").split()
    }
    for unit in units_for("all-in-one"):
        if unit.startswith("postgresql@"):
            assert "postgresql.service" in wanted
        elif unit != "wingman-backup.service":
            # The backup job runs from its timer.
            assert unit in wanted, unit
    assert "wingman-backup.timer" in wanted
