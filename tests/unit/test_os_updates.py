"""Operating-system updates: apt's simulation read right, the restart window, the status rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.ops import os_updates
from wingman.ops.health import updates_rows
from wingman.ops.os_updates import PendingUpgrade, RestartWindow, UpdatesReport

# Lines as bookworm's apt 2.6 prints them (``apt-get --simulate dist-upgrade``).
SIMULATION = """\
Reading package lists...
Inst libssl3 [3.0.19-1~deb12u2] (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Inst libgnutls30 [3.7.9-2+deb12u6] (3.7.9-2+deb12u7 Debian:12.15/oldstable, \
Debian-Security:12/oldstable-security [amd64])
Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.15/oldstable [amd64])
Inst linux-image-6.1.0-42-amd64 (6.1.192-3 Debian-Security:12/oldstable-security [amd64])
Conf libssl3 (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
"""


def test_simulation_names_each_upgrade_and_its_origins() -> None:
    found = {u.name: u for u in os_updates.parse_simulation(SIMULATION)}
    assert list(found) == ["libssl3", "libgnutls30", "bash", "linux-image-6.1.0-42-amd64"]
    assert found["libssl3"].installed == "3.0.19-1~deb12u2"
    assert found["libssl3"].candidate == "3.0.22-1~deb12u2"
    assert found["libgnutls30"].origins == [
        "Debian:12.15/oldstable",
        "Debian-Security:12/oldstable-security",
    ]
    assert [u.name for u in found.values() if u.security] == [
        "libssl3",
        "libgnutls30",
        "linux-image-6.1.0-42-amd64",
    ]
    # A package the upgrade adds has no installed version.
    assert found["linux-image-6.1.0-42-amd64"].installed == ""


def test_unit_of_a_process_is_its_service_never_a_session() -> None:
    assert os_updates.unit_of("0::/system.slice/wingman-web.service\n") == "wingman-web.service"
    worker = "0::/system.slice/system-wingman\\x2dworker.slice/wingman-worker@ai.service"
    assert os_updates.unit_of(worker) == "wingman-worker@ai.service"
    assert os_updates.unit_of("0::/user.slice/user-989.slice/session-3.scope") is None
    assert os_updates.unit_of("0::/") is None


def test_restart_plan_restarts_data_services_first_and_only_wingman_ones() -> None:
    units = [
        "wingman-web.service",
        "ssh.service",
        "wingman-proxy.service",
        "wingman-worker@ai.service",
        "postgresql@15-main.service",
        "wingman-redis@queue.service",
        "wingman-bootcheck.service",
    ]
    ours, others = os_updates.restart_plan(units)
    assert ours == [
        "wingman-redis@queue.service",
        "postgresql@15-main.service",
        "wingman-worker@ai.service",
        "wingman-web.service",
        "wingman-proxy.service",
    ]
    assert others == ["ssh.service", "wingman-bootcheck.service"]


def test_a_newer_installed_kernel_asks_for_a_reboot(tmp_path: Path) -> None:
    for release in ("6.1.0-27-amd64", "6.1.0-28-amd64"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "modules.dep").touch()
    assert os_updates.newer_kernel(tmp_path, running="6.1.0-27-amd64") == "6.1.0-28-amd64"
    assert os_updates.newer_kernel(tmp_path, running="6.1.0-28-amd64") is None
    # A container runs its host's kernel: nothing a reboot of the appliance would change.
    assert os_updates.newer_kernel(tmp_path, running="6.8.0-40-generic") is None
    assert os_updates.newer_kernel(tmp_path / "none", running="6.1.0-27-amd64") is None


@pytest.mark.parametrize(
    ("text", "moment", "inside"),
    [
        ("03:00-05:00", "2026-12-02 03:00", True),  # a Wednesday
        ("03:00-05:00", "2026-12-02 05:00", False),
        ("sat,sun 02:00-04:00", "2026-12-05 02:30", True),  # a Saturday
        ("sat,sun 02:00-04:00", "2026-12-04 02:30", False),  # a Friday
        # Past midnight: Sunday's window runs into Monday morning, not Sunday's own small hours.
        ("sun 23:00-01:00", "2026-12-06 23:30", True),
        ("sun 23:00-01:00", "2026-12-07 00:30", True),
        ("sun 23:00-01:00", "2026-12-06 00:30", False),
    ],
)
def test_restart_window(text: str, moment: str, inside: bool) -> None:
    assert RestartWindow.parse(text).contains(datetime.fromisoformat(moment)) is inside


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sunday 03:00-04:00", "expected [DAYS ]HH:MM-HH:MM"),
        ("sun 3:00-4:00", "expected [DAYS ]HH:MM-HH:MM"),
        ("xyz 03:00-04:00", "unknown day 'xyz'"),
        ("25:00-26:00", "restart window '25:00-26:00'"),
        ("04:00-04:00", "starts when it ends"),
    ],
)
def test_a_bad_restart_window_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="restart window") as info:
        RestartWindow.parse(text)
    assert message in str(info.value)


@given(
    start=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    hours=st.integers(1, 23),
    moment=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)),
)
def test_an_every_day_window_holds_a_moment_exactly_when_its_clock_time_does(
    start: datetime, hours: int, moment: datetime
) -> None:
    begin = datetime.combine(moment.date(), start)
    end = begin + timedelta(hours=hours)
    window = RestartWindow.parse(f"{begin:%H:%M}-{end:%H:%M}")
    minute = moment.replace(second=0, microsecond=0)
    inside = begin <= minute < end or begin - timedelta(days=1) <= minute < end - timedelta(days=1)
    assert window.contains(moment) is inside


def report(**changes: object) -> UpdatesReport:
    base: dict[str, object] = {
        "upgrades": [],
        "lists_fetched": True,
        "last_upgrade_run": datetime.now(UTC).isoformat(),
        "uptime_s": 3600.0,
        "units": {},
        "newer_kernel": None,
    }
    return UpdatesReport(**(base | changes))  # type: ignore[arg-type]


def test_status_rows_are_quiet_while_the_daily_run_keeps_up() -> None:
    rows = {r.name: r for r in updates_rows(report(), "")}
    assert [r.state for r in rows.values()] == ["ok", "ok", "ok"]
    assert rows["security"].value.startswith("none pending")


def test_status_warns_when_security_upgrades_wait_past_two_days() -> None:
    upgrade = PendingUpgrade(
        name="libssl3", installed="1", candidate="2", origins=["Debian-Security:12"], security=True
    )
    fresh = updates_rows(report(upgrades=[upgrade]), "")[0]
    assert (fresh.state, fresh.figures["packages"]) == ("ok", ["libssl3"])
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    late = updates_rows(report(upgrades=[upgrade], last_upgrade_run=old), "")[0]
    assert late.state == "warn"
    assert "1 pending (libssl3)" in late.value


def test_status_says_when_the_package_lists_were_never_fetched() -> None:
    young = updates_rows(report(lists_fetched=False, last_upgrade_run=None), "")[0]
    assert young.state == "n/a"
    old = updates_rows(report(lists_fetched=False, last_upgrade_run=None, uptime_s=3 * 86400), "")
    assert old[0].state == "warn"
    assert "not fetched" in old[0].value


def test_status_names_services_to_restart_and_when() -> None:
    units = {"wingman-web.service": ["/usr/lib/libssl.so.3"], "ssh.service": ["/usr/sbin/sshd"]}
    restart = updates_rows(report(units=units), "sun 03:00-05:00")[1]
    assert restart.state == "warn"
    assert restart.value == (
        "wingman-web.service (restarted in the window sun 03:00-05:00); "
        "ssh.service (reboot, or restart by hand)"
    )
    reboot = updates_rows(report(newer_kernel="6.1.0-28-amd64"), "")[2]
    assert (reboot.state, reboot.value) == (
        "warn",
        "kernel 6.1.0-28-amd64 installed: reboot to run it",
    )
