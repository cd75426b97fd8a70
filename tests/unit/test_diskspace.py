"""The free-space verdict shared by ``wingmanctl status`` and ``doctor``."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from wingman.ops.diskspace import FAIL_SHARE, WARN_FREE_BYTES, WARN_SHARE, measure, verdict
from wingman.ops.doctor import disk_findings
from wingman.ops.health import disk_rows

GIB = 2**30


def test_thresholds() -> None:
    # A 100 GiB disk: 15 GiB free is fine, just under is a warning, under 5 GiB a failure.
    assert verdict(15 * GIB, 100 * GIB) == "ok"
    assert verdict(15 * GIB - 1, 100 * GIB) == "warn"
    assert verdict(5 * GIB, 100 * GIB) == "warn"
    assert verdict(5 * GIB - 1, 100 * GIB) == "fail"
    # A 10 GiB disk: 1.9 GiB free is 19 %, yet under 2 GiB: a warning.
    assert verdict(int(1.9 * GIB), 10 * GIB) == "warn"
    assert verdict(2 * GIB, 10 * GIB) == "ok"
    # A file system that reports no size at all is treated as full.
    assert verdict(0, 0) == "fail"


@given(st.integers(min_value=1, max_value=2**50), st.floats(min_value=0, max_value=1))
def test_verdict_follows_the_share_and_the_bytes(total: int, fraction: float) -> None:
    free = int(total * fraction)
    state = verdict(free, total)
    share = free / total
    if share < FAIL_SHARE:
        assert state == "fail"
    elif share < WARN_SHARE or free < WARN_FREE_BYTES:
        assert state == "warn"
    else:
        assert state == "ok"


def test_measure_reads_the_file_system_of_the_nearest_existing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "made" / "yet"
    space = measure(missing)
    fs = os.statvfs(tmp_path)
    assert space.path == str(missing)
    assert space.total == fs.f_blocks * fs.f_frsize
    # Free space moves while the machine runs: within 1 GiB of a fresh reading.
    assert abs(space.free - fs.f_bavail * fs.f_frsize) < GIB
    assert space.state == verdict(space.free, space.total)
    assert space.describe().endswith(f"({space.share:.0%})")


def test_status_and_doctor_give_the_same_verdict(tmp_path: Path) -> None:
    (row,) = disk_rows([tmp_path])
    (finding,) = disk_findings([tmp_path])
    expected = measure(tmp_path).state
    assert row.state == expected
    assert finding.state == expected
    assert row.figures["total"] == measure(tmp_path).total
    assert bool(finding.fix) == (expected != "ok")
