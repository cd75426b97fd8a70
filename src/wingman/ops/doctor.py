"""``wingmanctl doctor``: checks an installation and says how to fix each problem found.

Every check returns a :class:`Finding`; a problem always carries a ``fix``, a command or edit the
admin can apply. No secret value is ever part of a finding. The delivery checks talk to the
configured code backends (ops/delivery_probe.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis

from wingman.config import (
    INSECURE_JWT_KEY,
    INSECURE_OTP_HASH_KEY,
    INSECURE_SECRET,
    Settings,
    SettingsError,
    config_paths,
    load_settings,
)
from wingman.db.migrations import head_revision, pending_revisions
from wingman.devstack.binaries import MIN_POSTGRES_MAJOR, MissingBinaryError
from wingman.devstack.processes import port_open
from wingman.ops.backups import BackupError, Connection, client_tool
from wingman.ops.delivery_probe import delivery_findings
from wingman.ops.diskspace import FIX, measure
from wingman.ops.findings import Finding, Severity, ok, problem
from wingman.ops.units import UnitSource
from wingman.redis_address import is_sentinel_url, parse_sentinel_url
from wingman.server.redis import sync_client

MIN_REDIS_MAJOR = 7
MIN_SECRET_LENGTH = 32
CLOCK_SKEW_MAX_S = 2.0
AREAS = ("config", "secrets", "ports", "delivery", "disk", "clock", "versions", "tuning")
GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def restart_hint(source: UnitSource, unit: str) -> str:
    if source.kind == "appliance":
        names = getattr(source, "names", {})
        return f"systemctl start {names.get(unit, unit)}; then `wingmanctl logs {unit}`"
    return f"wingmanctl dev up; then `wingmanctl logs {unit}`"


# -- configuration and secrets -----------------------------------------------------------------


def config_findings(environ: dict[str, str]) -> tuple[list[Finding], Settings | None]:
    main, _ = config_paths(environ)
    try:
        settings = load_settings(environ)
    except SettingsError as exc:
        return [
            problem("config", "settings", "fail", str(exc), f"correct the key named, in {main}")
        ], None
    found = [ok("config", "settings", f"{main} loads and validates")]
    if main.is_file():
        mode = main.stat().st_mode & 0o777
        if mode & 0o077:
            found.append(
                problem(
                    "config",
                    "settings file private",
                    "fail",
                    f"{main} is readable by others (mode {mode:o}) and holds secrets",
                    f"chmod 600 {main}",
                )
            )
        else:
            found.append(ok("config", "settings file private", f"mode {mode:o}"))
    return found, settings


def secret_findings(settings: Settings) -> list[Finding]:
    found = []
    for key, value, placeholder in (
        ("secret_key", settings.security.secret_key, INSECURE_SECRET),
        ("jwt_key", settings.security.jwt_key, INSECURE_JWT_KEY),
        ("otp_hash_key", settings.security.otp_hash_key, INSECURE_OTP_HASH_KEY),
    ):
        name = f"security.{key}"
        fix = f"set {name} to the output of: {GENERATE}"
        severity: Severity = "fail" if settings.is_production else "warn"
        if value == placeholder:
            found.append(problem("secrets", name, severity, "still the built-in placeholder", fix))
        elif len(value) < MIN_SECRET_LENGTH:
            found.append(
                problem(
                    "secrets",
                    name,
                    severity,
                    f"only {len(value)} characters (at least {MIN_SECRET_LENGTH} needed)",
                    fix,
                )
            )
        else:
            found.append(ok("secrets", name, f"set ({len(value)} characters)"))
    return found


# -- services, ports, versions -----------------------------------------------------------------


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://"))
    return parts.hostname or "127.0.0.1", parts.port or default_port


def port_findings(settings: Settings, source: UnitSource) -> list[Finding]:
    units = {unit.name: unit for unit in source.units()}
    found = []
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - not binding
    port = settings.server.port
    web = units.get("web")
    listening = port_open(port, host)
    if web is not None and web.up and not listening:
        found.append(
            problem(
                "ports",
                f"web {host}:{port}",
                "fail",
                "the web unit runs but nothing listens on its port",
                restart_hint(source, "web"),
            )
        )
    elif web is not None and not web.up and listening:
        found.append(
            problem(
                "ports",
                f"web {host}:{port}",
                "fail",
                "the web unit is down and another program holds its port",
                f"stop that program (`ss -ltnp 'sport = :{port}'` names it) or change server.port",
            )
        )
    elif web is not None and not web.up:
        found.append(
            problem(
                "ports", f"web {host}:{port}", "fail", "web is down", restart_hint(source, "web")
            )
        )
    else:
        found.append(ok("ports", f"web {host}:{port}", "listening"))
    for unit, url, default in (
        ("postgres", settings.database.url, 5432),
        ("redis-queue", settings.redis.queue_url, 6379),
        ("redis-cache", settings.redis.effective_cache_url, 6379),
    ):
        found.extend(_endpoint_findings(unit, url, default, source))
    return found


def _endpoint_findings(unit: str, url: str, default: int, source: UnitSource) -> list[Finding]:
    found = []
    # A Sentinel URL names the Sentinels (the master moves): each of them should answer.
    addresses = (
        list(parse_sentinel_url(url).sentinels)
        if is_sentinel_url(url)
        else [_host_port(url, default)]
    )
    for address in addresses:
        if port_open(address[1], address[0], timeout=1.0):
            found.append(ok("ports", f"{unit} {address[0]}:{address[1]}", "accepts connections"))
        else:
            found.append(
                problem(
                    "ports",
                    f"{unit} {address[0]}:{address[1]}",
                    "fail",
                    "nothing accepts connections",
                    restart_hint(source, unit),
                )
            )
    return found


def postgres_findings(settings: Settings, source: UnitSource) -> list[Finding]:
    connection = Connection.from_url(settings.database.url)
    try:
        with psycopg.connect(connection.conninfo()) as conn:
            number = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
            jit = str(conn.execute("SHOW jit").fetchone()[0])  # type: ignore[index]
            epoch = float(conn.execute("SELECT extract(epoch FROM now())").fetchone()[0])  # type: ignore[index]
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [problem("versions", "postgresql", "fail", first, restart_hint(source, "postgres"))]
    major = number // 10000
    found = []
    if major < MIN_POSTGRES_MAJOR:
        found.append(
            problem(
                "versions",
                "postgresql",
                "fail",
                f"server {major} is older than {MIN_POSTGRES_MAJOR}",
                f"upgrade PostgreSQL to {MIN_POSTGRES_MAJOR} or newer",
            )
        )
    else:
        found.append(ok("versions", "postgresql", f"server {major}"))
    try:
        tool = client_tool("pg_dump", major)
        found.append(ok("versions", "pg_dump", tool))
    except (BackupError, MissingBinaryError) as exc:
        found.append(
            problem(
                "versions",
                "pg_dump",
                "fail",
                str(exc),
                f"apt-get install postgresql-client-{major}",
            )
        )
    found.extend(_migration_findings(settings.database.url))
    # The drop-in written by tuning turns jit off: a server still on jit=on never loaded it.
    if jit == "on":
        found.append(
            problem(
                "tuning",
                "postgresql drop-in",
                "fail",
                "jit is on: the Wingman drop-in (wingman.conf) is not loaded",
                "wingmanctl tune --apply, then restart PostgreSQL",
            )
        )
    else:
        found.append(ok("tuning", "postgresql drop-in", "loaded (jit off)"))
    skew = abs(time.time() - epoch)
    if skew > CLOCK_SKEW_MAX_S:
        found.append(
            problem(
                "clock",
                "skew with postgresql",
                "warn",
                f"{skew:.1f} s apart",
                "synchronise both hosts' clocks with NTP (timedatectl set-ntp true)",
            )
        )
    else:
        found.append(ok("clock", "skew with postgresql", f"{skew:.2f} s"))
    return found


def _migration_findings(url: str) -> list[Finding]:
    try:
        pending = pending_revisions(url)
    except Exception as exc:  # noqa: BLE001 - an unknown revision: the database is ahead
        return [
            problem(
                "versions",
                "schema",
                "fail",
                f"the database's schema revision is unknown to this version ({exc})",
                "upgrade Wingman to the version that migrated this database",
            )
        ]
    if pending:
        return [
            problem(
                "versions",
                "schema",
                "warn",
                f"{len(pending)} migration(s) pending: {', '.join(pending)}",
                "wingmanctl migrate",
            )
        ]
    return [ok("versions", "schema", f"at head {head_revision()}")]


EXPECTED_REDIS = {
    "queue": {"maxmemory-policy": "noeviction", "appendonly": "yes"},
    "cache": {"maxmemory-policy": "allkeys-lru"},
}


def redis_findings(settings: Settings, source: UnitSource) -> list[Finding]:
    found = []
    for role, url in (
        ("queue", settings.redis.queue_url),
        ("cache", settings.redis.effective_cache_url),
    ):
        client = sync_client(url, timeout=3)
        try:
            version = str(client.info("server")["redis_version"])
            config = {
                key: str(client.config_get(key).get(key, ""))
                for key in ("maxmemory", "maxmemory-policy", "appendonly")
            }
        except redis.RedisError as exc:
            found.append(
                problem(
                    "versions",
                    f"redis-{role}",
                    "fail",
                    str(exc),
                    restart_hint(source, f"redis-{role}"),
                )
            )
            continue
        finally:
            client.close()
        major = int(version.split(".", maxsplit=1)[0])
        if major < MIN_REDIS_MAJOR:
            found.append(
                problem(
                    "versions",
                    f"redis-{role}",
                    "fail",
                    f"Redis {version} is older than {MIN_REDIS_MAJOR}",
                    f"upgrade Redis to {MIN_REDIS_MAJOR} or newer",
                )
            )
        else:
            found.append(ok("versions", f"redis-{role}", f"Redis {version}"))
        # One shared instance in development serves both roles; only the queue role's rules apply.
        if role == "cache" and url == settings.redis.queue_url:
            continue
        wrong = {k: config.get(k) for k, v in EXPECTED_REDIS[role].items() if config.get(k) != v}
        if config.get("maxmemory") in ("0", ""):
            wrong["maxmemory"] = "0 (unlimited)"
        expected = ", ".join(f"{k} {v}" for k, v in EXPECTED_REDIS[role].items())
        if wrong:
            found.append(
                problem(
                    "tuning",
                    f"redis-{role}",
                    "fail",
                    ", ".join(f"{k} is {v}" for k, v in wrong.items())
                    + f" (expected {expected}, maxmemory set)",
                    "wingmanctl tune --apply, then restart "
                    + ("wingman-redis@" + role if source.kind == "appliance" else "the stack"),
                )
            )
        else:
            found.append(
                ok("tuning", f"redis-{role}", f"{config['maxmemory-policy']}, maxmemory set")
            )
    return found


def tuning_file_finding(environ: dict[str, str], source: UnitSource) -> Finding:
    _, tuning = config_paths(environ)
    if tuning.is_file():
        return ok("tuning", "tuning.toml", f"{tuning} present")
    if source.kind == "development":
        return ok("tuning", "tuning.toml", "not used by a development stack")
    return problem(
        "tuning",
        "tuning.toml",
        "warn",
        f"{tuning} does not exist: processes run with untuned defaults",
        "wingmanctl tune --apply",
    )


# -- host --------------------------------------------------------------------------------------


def disk_findings(paths: Iterable[Path]) -> list[Finding]:
    """Free space per data folder: warn early, fail when nearly full (ops/diskspace.py)."""
    found = []
    for path in paths:
        space = measure(path)
        if space.state == "ok":
            found.append(ok("disk", str(path), space.describe()))
        else:
            found.append(problem("disk", str(path), space.state, space.describe(), FIX))
    return found


def clock_sync_finding() -> Finding:
    if shutil.which("timedatectl") is None:
        return ok("clock", "ntp", "timedatectl not available; synchronisation not checked")
    result = subprocess.run(
        ["timedatectl", "show", "--property=NTPSynchronized", "--value"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return ok("clock", "ntp", "timedatectl gave no answer; synchronisation not checked")
    if result.stdout.strip() == "yes":
        return ok("clock", "ntp", "synchronised")
    return problem(
        "clock",
        "ntp",
        "warn",
        "the system clock is not synchronised (tokens and codes expire by the clock)",
        "timedatectl set-ntp true",
    )


def python_finding() -> Finding:
    version = ".".join(map(str, sys.version_info[:3]))
    if not (3, 11) <= sys.version_info[:2] <= (3, 13):
        return problem(
            "versions",
            "python",
            "warn",
            f"{version} (supported: 3.11 to 3.13)",
            "use Python 3.11, 3.12 or 3.13",
        )
    return ok("versions", "python", version)


def diagnose(source: UnitSource) -> list[Finding]:
    """Every check, in reading order; later checks are skipped when settings do not load."""
    environ = {**os.environ, **source.settings_environ()}
    found, settings = config_findings(environ)
    if settings is None:
        return found
    found += secret_findings(settings)
    found += port_findings(settings, source)
    found += delivery_findings(settings)
    found += disk_findings([*source.data_paths(), source.default_backup_dir(settings)])
    found.append(clock_sync_finding())
    found.append(python_finding())
    found += postgres_findings(settings, source)
    found += redis_findings(settings, source)
    found.append(tuning_file_finding(environ, source))
    return sorted(found, key=lambda finding: AREAS.index(finding.area))


def exit_code(findings: list[Finding]) -> int:
    """0 when all is well, 1 with warnings only, 2 when anything failed."""
    states = {finding.state for finding in findings}
    return 2 if "fail" in states else 1 if "warn" in states else 0
