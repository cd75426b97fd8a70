"""Finding the PostgreSQL and Redis (or Valkey) server binaries on this host, and their versions.

The dev stack and the tests accept PostgreSQL 14 or newer and Redis 7 or newer, or Valkey (a
Redis fork with the same protocol and configuration, Debian 13 ships both). Anything older is
named, with its version, in one message that says what to install.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIN_POSTGRES_MAJOR = 14
MIN_REDIS_MAJOR = 7
# In order of preference when both are installed.
REDIS_SERVERS = ("redis-server", "valkey-server")
INSTALL_HINT = (
    "install them with: sudo apt-get install postgresql redis-server "
    "(or run scripts/bootstrap, which does it for you)"
)

_POSTGRES_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_REDIS_VERSION = re.compile(r"\bv=(\d+)\.(\d+)\.(\d+)")


class MissingBinaryError(RuntimeError):
    """A server binary the dev stack needs is not installed, or is too old."""


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    bin_dir: Path
    major: int

    def __getitem__(self, tool: str) -> str:
        return str(self.bin_dir / tool)


@dataclass(frozen=True, slots=True)
class RedisBinary:
    """One ``redis-server`` or ``valkey-server`` and the version it reports."""

    path: str
    version: tuple[int, int, int]

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def parse_postgres_major(text: str) -> int | None:
    """The major version in ``postgres --version`` output (``postgres (PostgreSQL) 17.2 ...``)."""
    match = _POSTGRES_VERSION.search(text)
    return int(match.group(1)) if match else None


def parse_redis_version(text: str) -> tuple[int, int, int] | None:
    """The version in ``redis-server --version`` (``Redis server v=7.0.15 ...``) or Valkey's."""
    match = _REDIS_VERSION.search(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def choose_postgres(found: list[PostgresBinaries]) -> PostgresBinaries:
    """The newest usable server among ``found``; one clear error naming what was seen if none."""
    usable = [b for b in found if b.major >= MIN_POSTGRES_MAJOR]
    if usable:
        return max(usable, key=lambda b: b.major)
    if found:
        seen = ", ".join(f"PostgreSQL {b.major} ({b.bin_dir})" for b in found)
        raise MissingBinaryError(
            f"found {seen}: too old, Wingman needs PostgreSQL {MIN_POSTGRES_MAJOR} or newer; "
            f"install a newer server (e.g. sudo apt-get install postgresql) or run "
            f"scripts/bootstrap"
        )
    raise MissingBinaryError(
        f"PostgreSQL {MIN_POSTGRES_MAJOR}+ server binaries not found (initdb, pg_ctl, postgres); "
        + INSTALL_HINT
    )


def choose_redis(found: list[RedisBinary]) -> RedisBinary:
    """The first usable server among ``found`` (in ``REDIS_SERVERS`` order); else one error."""
    for binary in found:
        if binary.version[0] >= MIN_REDIS_MAJOR:
            return binary
    if found:
        seen = ", ".join(f"{b.name} {b.version_text} ({b.path})" for b in found)
        raise MissingBinaryError(
            f"found {seen}: too old, Wingman needs Redis {MIN_REDIS_MAJOR} or newer (or Valkey); "
            f"install a newer one (e.g. sudo apt-get install redis-server, or valkey-server)"
        )
    raise MissingBinaryError(f"redis-server not found on PATH (nor valkey-server); {INSTALL_HINT}")


def _version_output(binary: Path | str) -> str:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=False, timeout=30
        )
    except OSError:
        return ""
    return out.stdout + out.stderr


def _postgres_at(bin_dir: Path) -> PostgresBinaries | None:
    if not all((bin_dir / tool).is_file() for tool in ("postgres", "initdb", "pg_ctl")):
        return None
    major = parse_postgres_major(_version_output(bin_dir / "postgres"))
    return None if major is None else PostgresBinaries(bin_dir, major)


@functools.cache
def find_postgres() -> PostgresBinaries:
    """The newest PostgreSQL server (14+) found in Debian's layout or on PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    found = [b for b in map(_postgres_at, dict.fromkeys(candidates)) if b is not None]
    return choose_postgres(found)


@functools.cache
def find_redis_server() -> RedisBinary:
    """``redis-server`` (or ``valkey-server``) on PATH, version 7 or newer."""
    found = []
    for name in REDIS_SERVERS:
        path = shutil.which(name)
        if path is None:
            continue
        version = parse_redis_version(_version_output(path))
        if version is not None:
            found.append(RedisBinary(path, version))
    return choose_redis(found)


def find_redis() -> str:
    """Path of the Redis server binary the dev stack runs."""
    return find_redis_server().path
