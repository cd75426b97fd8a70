"""Can the service user reach the data folder? Checked before a server is started.

Started as root, PostgreSQL and Redis run as the ``wingman`` system user (PostgreSQL refuses to
run as root). That user must be able to enter every folder above the data folder: a checkout
under ``/root`` (mode 0700) is the usual case where it cannot. Asked up front, the answer names
the folder and the fix instead of a permission error from deep inside a server's start-up.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from wingman.devstack.processes import RunAs


def _can_enter(path: Path, run_as: RunAs) -> bool:
    """Whether ``run_as`` can change into ``path`` (search permission on it and every parent)."""
    result = subprocess.run(
        ["/bin/sh", "-c", 'cd -- "$1"', "sh", str(path)],
        capture_output=True,
        check=False,
        user=run_as.uid,
        group=run_as.gid,
        extra_groups=run_as.extra_groups,
        timeout=30,
    )
    return result.returncode == 0


def unreachable_reason(path: Path, run_as: RunAs) -> str | None:
    """None when ``run_as`` can reach ``path`` (or its nearest existing parent); else the fix."""
    if run_as.uid is None:
        return None
    path = path.absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if _can_enter(existing, run_as):
        return None
    blocker = next(
        (p for p in reversed((existing, *existing.parents)) if not _can_enter(p, run_as)),
        existing,
    )
    mode = blocker.stat().st_mode & 0o777
    return (
        f"the data folder {path} is out of reach of the '{run_as.name}' user that PostgreSQL and "
        f"Redis run as when started by root: {blocker} (mode {mode:04o}) does not let it in. "
        f"Move the checkout to a folder others can enter (e.g. /srv/wingman), run as a normal "
        f"user instead of root, or keep the data elsewhere (make run DATA=/srv/wingman-data, "
        f"wingmanctl dev up --data-dir DIR)"
    )
