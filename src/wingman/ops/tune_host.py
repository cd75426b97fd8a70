"""The host facts a tuning plan is computed from: cores, RAM and disk kind, each detected on
this host (cgroup limits included) or given, with where it came from."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from wingman.tuning.plan import DiskKind, HostFacts

# cgroup v2 and v1 files that cap a container below the host's size.
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
# Block devices that say nothing about the disk the data lives on.
_VIRTUAL_DEVICES = ("loop", "ram", "zram", "sr", "fd", "nbd")


@dataclass(frozen=True, slots=True)
class Detected:
    """Host facts and, for each, where it came from (shown as the reason of the host rows)."""

    facts: HostFacts
    sources: dict[str, str]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def detect_cores() -> tuple[int, str]:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0))
    source = "CPUs in this process's affinity mask"
    quota = period = None
    cpu_max = _read(CGROUP_CPU_MAX)
    if cpu_max and not cpu_max.startswith("max"):
        quota_text, _, period_text = cpu_max.partition(" ")
        quota, period = int(quota_text), int(period_text or 100_000)
    else:
        v1_quota, v1_period = _read(CGROUP_V1_QUOTA), _read(CGROUP_V1_PERIOD)
        if v1_quota and v1_period and int(v1_quota) > 0:
            quota, period = int(v1_quota), int(v1_period)
    if quota and period and math.ceil(quota / period) < cores:
        return max(1, math.ceil(quota / period)), "cgroup CPU quota"
    return cores, source


def detect_ram_mb() -> tuple[int, str]:
    """MemTotal from /proc/meminfo, capped by a cgroup memory limit."""
    meminfo = _read(Path("/proc/meminfo")) or ""
    total_kb = next(
        (int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0
    )
    ram_mb, source = total_kb // 1024, "MemTotal in /proc/meminfo"
    for path in (CGROUP_MEMORY_MAX, CGROUP_V1_MEMORY):
        limit = _read(path)
        if limit and limit.isdigit() and 0 < int(limit) // (1024 * 1024) < ram_mb:
            return int(limit) // (1024 * 1024), f"cgroup memory limit ({path})"
    return ram_mb, source


def _rotational(device_dir: Path) -> bool | None:
    value = _read(device_dir / "queue" / "rotational")
    if value is None and (device_dir / "partition").exists():
        value = _read(device_dir.resolve().parent / "queue" / "rotational")
    return None if value is None else value == "1"


def detect_disk(path: Path) -> tuple[DiskKind, str]:
    """SSD or HDD: the rotational flag of the device holding ``path``, else of the host's disks."""
    probe = path if path.exists() else Path("/")
    dev = probe.stat().st_dev
    device_dir = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    flag = _rotational(device_dir) if device_dir.exists() else None
    if flag is not None:
        return ("hdd" if flag else "ssd"), f"rotational flag of the device holding {probe}"
    flags = [
        _read(block / "queue" / "rotational")
        for block in sorted(Path("/sys/block").glob("*"))
        if not block.name.startswith(_VIRTUAL_DEVICES)
    ]
    known = [f for f in flags if f is not None]
    if known and all(f == "1" for f in known):
        return "hdd", "every disk in /sys/block is rotational"
    if known:
        return "ssd", "a non-rotational disk in /sys/block"
    return "ssd", "no disk information; SSD assumed"


def detect_host(
    cores: int | None, ram_gb: float | None, disk: str | None, data_path: Path
) -> Detected:
    """Host facts: each given value wins, the others are detected."""
    sources: dict[str, str] = {}
    if cores is None:
        cores, sources["cores"] = detect_cores()
    else:
        sources["cores"] = "given (--cores)"
    if ram_gb is None:
        ram_mb, sources["ram"] = detect_ram_mb()
    else:
        ram_mb, sources["ram"] = int(ram_gb * 1024), "given (--ram)"
    if disk is None:
        kind, sources["disk"] = detect_disk(data_path)
    else:
        kind, sources["disk"] = ("hdd" if disk == "hdd" else "ssd"), "given (--disk)"
    return Detected(HostFacts(cores=cores, ram_mb=ram_mb, disk=kind), sources)
