"""The appliance's operating system: pending security upgrades, processes on replaced files, and
whether the kernel that runs is the newest one installed.

Debian's ``unattended-upgrades`` installs security upgrades every day (the image enables it);
this module only reads what is left to do, for ``wingmanctl status`` and ``wingmanctl updates``:

- **pending upgrades**: ``apt-get --simulate dist-upgrade`` against the package lists that
  ``apt-daily.timer`` refreshes, each marked security when one of its origins is a security
  archive;
- **units to restart**: a process keeps running the old copy of an upgraded program or library
  until it restarts; the kernel shows those files as ``(deleted)`` in ``/proc/PID/exe`` and
  ``/proc/PID/maps``, and ``/proc/PID/cgroup`` names the unit the process belongs to;
- **reboot**: the newest kernel under ``/usr/lib/modules`` is not the one that runs.

Why not ``needrestart``: it restarts services itself while packages install, which is what the
restart window (``[updates] restart_window``) exists to hold back; the list alone is the few lines
below and reads in milliseconds, so ``wingmanctl status`` can show it every time.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Iterable
from datetime import datetime, time
from pathlib import Path

import msgspec

# ``Inst NAME [INSTALLED] (CANDIDATE ORIGIN, ORIGIN [ARCH])``; INSTALLED is absent for packages
# the upgrade adds. ORIGIN is ``Label:Version/Archive`` or ``Label:Archive``.
_INST = re.compile(r"^Inst (?P<name>\S+)(?: \[(?P<installed>[^\]]*)\])? \((?P<rest>.*)\)")
# Where files that a package upgrade replaced show up while a process still maps them.
_REPLACED_ROOTS = ("/usr/", "/bin/", "/sbin/", "/lib", "/opt/", "/etc/")
APT_TIMEOUT_S = 60.0
# ``apt.systemd.daily`` touches these after a package list refresh and an unattended upgrade
# run that succeeded.
UPDATE_STAMP = Path("/var/lib/apt/periodic/update-success-stamp")
UPGRADE_STAMP = Path("/var/lib/apt/periodic/upgrade-stamp")


class PendingUpgrade(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    installed: str
    candidate: str
    origins: list[str]
    security: bool


class AptError(Exception):
    """``apt-get`` could not say what is pending (not Debian, broken lists, a held lock)."""


def parse_simulation(output: str) -> list[PendingUpgrade]:
    """The upgrades of an ``apt-get --simulate dist-upgrade`` run, in its order."""
    found = []
    for line in output.splitlines():
        match = _INST.match(line)
        if match is None:
            continue
        candidate, _, origins_text = match["rest"].partition(" ")
        origins_text = re.sub(r"\s*\[[^\]]*\]\s*$", "", origins_text)
        origins = [o.strip() for o in origins_text.split(",") if o.strip()]
        found.append(
            PendingUpgrade(
                name=match["name"],
                installed=match["installed"] or "",
                candidate=candidate,
                origins=origins,
                security=any(_is_security(origin) for origin in origins),
            )
        )
    return found


def _is_security(origin: str) -> bool:
    label, _, archive = origin.partition(":")
    return "security" in label.lower() or archive.lower().endswith("-security")


def pending_upgrades(env: dict[str, str] | None = None) -> list[PendingUpgrade]:
    """What ``apt-get dist-upgrade`` would install now, from the lists as last refreshed.

    ``env`` replaces the environment (``APT_CONFIG`` points apt at other lists, as tests do).
    """
    try:
        done = subprocess.run(
            ["apt-get", "--simulate", "-o", "Debug::NoLocking=true", "dist-upgrade"],
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_S,
            env={**(env if env is not None else os.environ), "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AptError(f"apt-get: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise AptError(f"apt-get exited {done.returncode}: {last}")
    return parse_simulation(done.stdout)


def stamp_time(stamp: Path) -> datetime | None:
    """When ``apt.systemd.daily`` last touched ``stamp`` (None: never, or not this system)."""
    try:
        return datetime.fromtimestamp(stamp.stat().st_mtime).astimezone()
    except OSError:
        return None


def lists_fetched(env: dict[str, str] | None = None) -> bool:
    """Whether apt has any package list: without one, "nothing pending" means nothing."""
    done = subprocess.run(
        ["apt-config", "shell", "LISTS", "Dir::State::lists/d"],
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT_S,
        env=env,
        check=False,
    )
    folder = done.stdout.partition("=")[2].strip().strip("'")
    return bool(folder) and any(Path(folder).glob("*_Packages*"))


def uptime_s(proc: Path = Path("/proc")) -> float:
    return float((proc / "uptime").read_text().split()[0])


# -- processes on replaced files -----------------------------------------------------------------


def unit_of(cgroup_text: str) -> str | None:
    """The systemd service a process belongs to, from ``/proc/PID/cgroup`` (None: a login
    session's scope, a kernel thread, no systemd)."""
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if part.endswith(".service"):
                return part
            if part.endswith(".scope"):
                return None
    return None


def replaced_files(
    pid: int, proc: Path = Path("/proc"), roots: tuple[str, ...] = _REPLACED_ROOTS
) -> set[str]:
    """Files under ``roots`` (where packages install) that were replaced while the process
    kept running them: its program or a library."""
    found: set[str] = set()
    try:
        exe = os.readlink(proc / str(pid) / "exe")
        maps = (proc / str(pid) / "maps").read_text()
    except OSError:  # gone, or a kernel thread
        return found
    for path in [exe, *(line.split(None, 5)[-1] for line in maps.splitlines() if "/" in line)]:
        if path.endswith(" (deleted)") and path.startswith(roots):
            found.add(path.removesuffix(" (deleted)"))
    return found


def units_to_restart(proc: Path = Path("/proc")) -> dict[str, list[str]]:
    """Each service with a process on replaced files → those files (sorted)."""
    units: dict[str, set[str]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        files = replaced_files(int(entry.name), proc)
        if not files:
            continue
        try:
            unit = unit_of((entry / "cgroup").read_text())
        except OSError:
            continue
        if unit is not None:
            units.setdefault(unit, set()).update(files)
    return {unit: sorted(files) for unit, files in sorted(units.items())}


# -- the kernel --------------------------------------------------------------------------------


def _version_key(release: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", release))


def newer_kernel(
    modules: Path = Path("/usr/lib/modules"), running: str | None = None
) -> str | None:
    """The newest installed kernel when it is not the running one (a reboot starts it)."""
    running = running or platform.release()
    try:
        installed = [p.name for p in modules.iterdir() if (p / "modules.dep").exists()]
    except OSError:
        return None
    if not installed or running not in installed:
        # A container, or a kernel that came from elsewhere: no reboot of ours changes it.
        return None
    newest = max(installed, key=_version_key)
    return newest if _version_key(newest) > _version_key(running) else None


# -- what to restart, in which order --------------------------------------------------------------

# Wingman's own units restart without losing work (web drains, workers hand jobs back, Redis and
# PostgreSQL come back with their data); data services first, the front door last.
RESTART_ORDER = ("wingman-redis@", "postgresql@", "wingman-worker@", "wingman-web.", "wingman-")
# Run once at boot by the system itself: never restarted.
NOT_RESTARTED = ("wingman-bootcheck.service", "wingman-firstboot.service")


def restart_plan(units: Iterable[str]) -> tuple[list[str], list[str]]:
    """The units Wingman restarts, in :data:`RESTART_ORDER`, and the rest (for a reboot or the
    admin: sshd, journald, a login session)."""
    ours: list[tuple[int, str]] = []
    others = []
    for unit in units:
        rank = next((i for i, p in enumerate(RESTART_ORDER) if unit.startswith(p)), None)
        if rank is None or unit in NOT_RESTARTED or not unit.endswith(".service"):
            others.append(unit)
        else:
            ours.append((rank, unit))
    return [unit for _, unit in sorted(ours)], sorted(others)


class UpdatesReport(msgspec.Struct, kw_only=True):
    """Everything ``wingmanctl updates show`` and the status rows say."""

    upgrades: list[PendingUpgrade]
    # Why ``upgrades`` could not be read (then it is empty).
    apt_error: str = ""
    # False until apt-daily.timer first fetched the package lists (it needs the mirrors).
    lists_fetched: bool
    last_upgrade_run: str | None
    uptime_s: float
    units: dict[str, list[str]]
    newer_kernel: str | None

    @property
    def security(self) -> list[PendingUpgrade]:
        return [u for u in self.upgrades if u.security]


def collect(env: dict[str, str] | None = None) -> UpdatesReport:
    try:
        upgrades, apt_error = pending_upgrades(env), ""
        fetched = lists_fetched(env)
    except (AptError, OSError, subprocess.TimeoutExpired) as exc:
        upgrades, apt_error, fetched = [], str(exc), False
    last = stamp_time(UPGRADE_STAMP)
    return UpdatesReport(
        upgrades=upgrades,
        apt_error=apt_error,
        lists_fetched=fetched,
        last_upgrade_run=last.isoformat(timespec="seconds") if last else None,
        uptime_s=uptime_s(),
        units=units_to_restart(),
        newer_kernel=newer_kernel(),
    )


# -- the restart window --------------------------------------------------------------------------

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^(?:(?P<days>[a-z]{3}(?:,[a-z]{3})*) )?(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$"
)


class RestartWindow(msgspec.Struct, frozen=True, kw_only=True):
    """When units on replaced files may restart: ``"sat,sun 02:00-04:00"``, ``"03:00-04:00"``
    (every day); the end may be past midnight (``"23:00-01:00"``)."""

    days: frozenset[int]
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> RestartWindow:
        match = _WINDOW.match(text.strip().lower())
        if match is None:
            raise ValueError(
                f"restart window {text!r}: expected [DAYS ]HH:MM-HH:MM, e.g. 'sun 03:00-05:00'"
            )
        days = match["days"].split(",") if match["days"] else list(_DAYS)
        unknown = [d for d in days if d not in _DAYS]
        if unknown:
            raise ValueError(f"restart window {text!r}: unknown day {unknown[0]!r}")
        try:
            start, end = time.fromisoformat(match["start"]), time.fromisoformat(match["end"])
        except ValueError as exc:
            raise ValueError(f"restart window {text!r}: {exc}") from exc
        if start == end:
            raise ValueError(f"restart window {text!r}: it starts when it ends")
        return cls(days=frozenset(_DAYS.index(d) for d in days), start=start, end=end)

    def contains(self, moment: datetime) -> bool:
        now = moment.time().replace(second=0, microsecond=0)
        if self.start < self.end:
            return moment.weekday() in self.days and self.start <= now < self.end
        # Past midnight: the evening belongs to its day, the small hours to the day before.
        if now >= self.start:
            return moment.weekday() in self.days
        return now < self.end and (moment.weekday() - 1) % 7 in self.days
