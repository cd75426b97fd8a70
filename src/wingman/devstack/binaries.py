"""Finding the PostgreSQL and Redis server binaries on this host."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIN_POSTGRES_MAJOR = 15
INSTALL_HINT = (
    "install them with: sudo apt-get install postgresql redis-server "
    "(or run scripts/bootstrap, which does it for you)"
)


class MissingBinaryError(RuntimeError):
    """A server binary the dev stack needs is not installed."""


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    bin_dir: Path
    major: int

    def __getitem__(self, tool: str) -> str:
        return str(self.bin_dir / tool)


def _postgres_major(bin_dir: Path) -> int | None:
    postgres = bin_dir / "postgres"
    if not postgres.is_file():
        return None
    out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(match.group(1)) if match else None


@functools.cache
def find_postgres() -> PostgresBinaries:
    """The newest PostgreSQL server (>= 15) found in Debian's layout or on PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    found: list[PostgresBinaries] = []
    for bin_dir in candidates:
        major = _postgres_major(bin_dir)
        if major is not None and all((bin_dir / t).is_file() for t in ("initdb", "pg_ctl")):
            found.append(PostgresBinaries(bin_dir, major))
    usable = [b for b in found if b.major >= MIN_POSTGRES_MAJOR]
    if not usable:
        seen = ", ".join(f"{b.major} in {b.bin_dir}" for b in found) or "none"
        raise MissingBinaryError(
            f"PostgreSQL {MIN_POSTGRES_MAJOR}+ server binaries not found (seen: {seen}); "
            + INSTALL_HINT
        )
    return max(usable, key=lambda b: b.major)


@functools.cache
def find_redis() -> str:
    """Path of ``redis-server``."""
    path = shutil.which("redis-server")
    if path is None:
        raise MissingBinaryError(f"redis-server not found on PATH; {INSTALL_HINT}")
    return path
