"""Where Wingman's processes run: a development stack folder or the appliance's systemd units.

Both layouts name the same seven units the same way (``web``, ``worker-<queue>``, ``postgres``,
``redis-queue``, ``redis-cache``), so status, restore and logs are written once against
:class:`UnitSource`. The appliance has an eighth, ``proxy`` (Caddy, the HTTPS front door); a
development stack serves plain HTTP without one, so it is the appliance's only. The layout is
chosen by :func:`select_units`:

- ``--data-dir DIR`` given: the development stack in ``DIR`` (made by ``wingmanctl dev up``);
- otherwise, ``WINGMAN_CONFIG`` set: services named by that settings file only, with no unit
  this command can see or control (external PostgreSQL/Redis, tests, a container);
- otherwise, ``/etc/wingman/wingman.toml`` exists: the appliance (systemd);
- otherwise: the development stack in ``./var`` (``wingmanctl dev``'s default folder).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from wingman.config import DEFAULT_CONFIG_PATH, QUEUE_NAMES, Settings
from wingman.devstack.binaries import MissingBinaryError, find_postgres
from wingman.devstack.processes import stop_process_group
from wingman.devstack.stack import DevStack

Report = Callable[[str], None]
LayoutKind = Literal["development", "appliance", "settings-only"]

WORKER_UNITS = tuple(f"worker-{queue}" for queue in QUEUE_NAMES)
# The processes that write to the database: stopped during a restore.
WRITER_UNITS = ("web", *WORKER_UNITS)
# The units of every layout that has units.
UNIT_NAMES = ("web", *WORKER_UNITS, "postgres", "redis-queue", "redis-cache")
# The appliance's front proxy: every client request passes through it.
PROXY_UNIT = "proxy"
APPLIANCE_UNIT_NAMES = (*UNIT_NAMES, PROXY_UNIT)
DEV_DATA_DIR = Path("var")
# systemd reports "no value" for a 64-bit counter as its maximum.
_UNSET = 2**64 - 1


class UnitState(msgspec.Struct, kw_only=True):
    """One unit as the service manager (or the dev stack's pid files) sees it."""

    name: str
    up: bool
    pid: int | None = None
    uptime_s: float | None = None
    memory_bytes: int | None = None
    # The systemd unit, or the address / log file of a dev component.
    where: str = ""


class UnitSource(Protocol):
    """What status, restore, doctor and logs need from a layout."""

    kind: LayoutKind
    # The units this layout has, in the order :meth:`units` reports them.
    unit_names: tuple[str, ...]

    def settings_environ(self) -> dict[str, str]:
        """The environment ``load_settings`` must see for this layout."""

    def units(self) -> list[UnitState]:
        """Every unit of :attr:`unit_names`, in that order."""

    def stop_writers(self, report: Report) -> None:
        """Stop web and workers (everything that writes to the database)."""

    def start_writers(self, report: Report) -> None:
        """Start web and workers again."""

    def log_command(self, unit: str | None, lines: int, follow: bool) -> list[str]:
        """The command that shows the logs of ``unit`` (all units when None)."""

    def default_backup_dir(self, settings: Settings) -> Path:
        """Where backups go when ``--to`` is not given."""

    def data_paths(self) -> list[Path]:
        """Folders whose free disk space matters (databases, queues, backups)."""


def select_units(
    data_dir: Path | None,
    appliance_config: Path = DEFAULT_CONFIG_PATH,
    environ: Mapping[str, str] = os.environ,
) -> UnitSource:
    """The layout to inspect: see the module docstring for the rule."""
    if data_dir is not None:
        return DevUnits(DevStack(data_dir))
    if "WINGMAN_CONFIG" in environ:
        return SettingsOnly()
    if appliance_config.is_file():
        return SystemdUnits()
    return DevUnits(DevStack(DEV_DATA_DIR))


# -- process facts from /proc ------------------------------------------------------------------


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_uptime(pid: int) -> float | None:
    """Seconds since ``pid`` started, from its start time in ``/proc/<pid>/stat``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # Field 22 (starttime, in clock ticks after boot) is index 19 after "pid (comm)".
        started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
    return max(0.0, time.time() - started)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory(pid: int) -> int | None:
    """Resident memory of ``pid`` and all its descendants (Granian workers, PG backends)."""
    if not Path(f"/proc/{pid}").exists():
        return None
    tree = _children()
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _rss(current)
        todo.extend(tree.get(current, []))
    return total


# -- development stack -------------------------------------------------------------------------


class DevUnits:
    """A ``wingmanctl dev`` stack: pid files and logs under one data folder."""

    kind: LayoutKind = "development"
    unit_names: tuple[str, ...] = UNIT_NAMES

    def __init__(self, stack: DevStack) -> None:
        self.stack = stack

    def settings_environ(self) -> dict[str, str]:
        return {
            "WINGMAN_CONFIG": str(self.stack.settings_file),
            "WINGMAN_TUNING": str(self.stack.root / "tuning.toml"),
        }

    def exists(self) -> bool:
        return self.stack.load_state() is not None

    def units(self) -> list[UnitState]:
        rows = {row.name: row for row in self.stack.status()}
        states = []
        for name in self.unit_names:
            row = rows.get(name)
            if row is None or not row.running or row.pid is None:
                states.append(UnitState(name=name, up=False, where=row.detail if row else ""))
                continue
            states.append(
                UnitState(
                    name=name,
                    up=True,
                    pid=row.pid,
                    uptime_s=process_uptime(row.pid),
                    memory_bytes=tree_memory(row.pid),
                    where=row.detail,
                )
            )
        return states

    def stop_writers(self, report: Report) -> None:
        for row in self.stack.status():
            if row.name in WRITER_UNITS and row.running and row.pid is not None:
                clean = stop_process_group(row.pid, 30)
                (self.stack.run_dir / f"{row.name}.pid").unlink(missing_ok=True)
                report(f"{row.name}: stopped{'' if clean else ' (killed after 30 s)'}")

    def start_writers(self, report: Report) -> None:
        # `up` starts exactly what is not running and waits for readiness.
        self.stack.up(report=report)

    def log_files(self) -> dict[str, Path]:
        root = self.stack.root
        files = {name: self.stack.log_dir / f"{name}.log" for name in WRITER_UNITS}
        files["postgres"] = root / "postgres" / "postgresql.log"
        for role in ("queue", "cache"):
            files[f"redis-{role}"] = root / "redis" / role / "redis.log"
        return files

    def log_command(self, unit: str | None, lines: int, follow: bool) -> list[str]:
        files = self.log_files()
        if unit is not None and unit not in files:
            raise LookupError(
                f"a development stack has no {unit} unit (the front proxy runs on the appliance"
                " only; the stack serves plain HTTP)"
            )
        chosen = [files[unit]] if unit else [path for path in files.values() if path.exists()]
        # -F follows a file across rotation and waits for one that does not exist yet.
        return ["tail", "-n", str(lines), *(["-F"] if follow else []), *map(str, chosen)]

    def default_backup_dir(self, settings: Settings) -> Path:
        if settings.backup.dir != Settings().backup.dir:
            return Path(settings.backup.dir)
        return self.stack.root / "backups"

    def data_paths(self) -> list[Path]:
        return [self.stack.root]


# -- appliance (systemd) -----------------------------------------------------------------------


def systemd_unit_names(postgres_major: int) -> dict[str, str]:
    """Wingman's unit names mapped to the appliance's systemd units."""
    names = {"web": "wingman-web.service"}
    for queue in QUEUE_NAMES:
        names[f"worker-{queue}"] = f"wingman-worker@{queue}.service"
    names["postgres"] = f"postgresql@{postgres_major}-main.service"
    names["redis-queue"] = "wingman-redis@queue.service"
    names["redis-cache"] = "wingman-redis@cache.service"
    names[PROXY_UNIT] = "wingman-proxy.service"
    return names


def parse_systemctl_show(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p Id,...`` output for several units: blocks of ``Key=Value`` lines."""
    units: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            units[props["Id"]] = props
    return units


def unit_state(name: str, unit: str, props: Mapping[str, str], monotonic_now: float) -> UnitState:
    """One unit's state from its systemd properties (pure, so it is tested without systemd)."""
    pid = int(props.get("MainPID", "0") or 0)
    up = props.get("ActiveState") == "active" and pid > 0
    if not up:
        return UnitState(name=name, up=False, where=unit)
    entered = int(props.get("ActiveEnterTimestampMonotonic", "0") or 0)
    memory_raw = props.get("MemoryCurrent", "")
    memory = int(memory_raw) if memory_raw.isdigit() and int(memory_raw) != _UNSET else None
    return UnitState(
        name=name,
        up=True,
        pid=pid,
        uptime_s=max(0.0, monotonic_now - entered / 1e6) if entered else None,
        memory_bytes=memory,
        where=unit,
    )


class SystemdUnits:
    """The appliance: systemd units, read with ``systemctl show`` and driven with ``systemctl``."""

    kind: LayoutKind = "appliance"
    unit_names: tuple[str, ...] = APPLIANCE_UNIT_NAMES

    def __init__(self) -> None:
        try:
            major = find_postgres().major
        except MissingBinaryError:
            major = 15  # the appliance's base image ships PostgreSQL 15
        self.names = systemd_unit_names(major)

    def settings_environ(self) -> dict[str, str]:
        return {}

    def units(self) -> list[UnitState]:
        result = subprocess.run(
            [
                "systemctl",
                "show",
                "--property=Id,MainPID,ActiveState,ActiveEnterTimestampMonotonic,MemoryCurrent",
                *self.names.values(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        props = parse_systemctl_show(result.stdout)
        # CLOCK_MONOTONIC, the clock of systemd's *Monotonic timestamps.
        now = time.monotonic()
        return [
            unit_state(name, unit, props.get(unit, {}), now) for name, unit in self.names.items()
        ]

    def _systemctl(self, verb: str, report: Report) -> None:
        units = [self.names[name] for name in WRITER_UNITS]
        subprocess.run(["systemctl", verb, *units], check=True)
        report(f"systemctl {verb}: {', '.join(units)}")

    def stop_writers(self, report: Report) -> None:
        self._systemctl("stop", report)

    def start_writers(self, report: Report) -> None:
        self._systemctl("start", report)

    def log_command(self, unit: str | None, lines: int, follow: bool) -> list[str]:
        chosen = [self.names[unit]] if unit else list(self.names.values())
        units = [arg for name in chosen for arg in ("-u", name)]
        return ["journalctl", "--no-pager", "-n", str(lines), *(["-f"] if follow else []), *units]

    def default_backup_dir(self, settings: Settings) -> Path:
        return Path(settings.backup.dir)

    def data_paths(self) -> list[Path]:
        return [Path("/var/lib/postgresql"), Path("/var/lib/wingman")]


# -- settings only -----------------------------------------------------------------------------


class SettingsOnly:
    """Services named by ``WINGMAN_CONFIG`` alone: no unit is visible or controllable from here."""

    kind: LayoutKind = "settings-only"
    unit_names: tuple[str, ...] = ()

    def settings_environ(self) -> dict[str, str]:
        return {}

    def units(self) -> list[UnitState]:
        return []

    def stop_writers(self, report: Report) -> None:
        report("web and workers are not managed from here: make sure they are stopped")

    def start_writers(self, report: Report) -> None:
        report("web and workers are not managed from here: start them again")

    def log_command(self, unit: str | None, lines: int, follow: bool) -> list[str]:
        raise LookupError(
            "no log location is known without a data folder or the appliance; give --data-dir"
        )

    def default_backup_dir(self, settings: Settings) -> Path:
        return Path(settings.backup.dir)

    def data_paths(self) -> list[Path]:
        return []
