"""Backups: a ``pg_dump`` custom-format archive, the front proxy's folders and a checksummed
manifest, and restore.

A backup is up to three files in the backup folder, kept and deleted together::

    wingman-20261123T101500Z.dump            pg_dump --format=custom (owner-only)
    wingman-20261123T101500Z.files.tar       the proxy's folders, when this host has them
                                             (owner-only; see ops/backup_files.py)
    wingman-20261123T101500Z.manifest.json   BackupManifest: versions, sizes, sha256s, time

Nothing is restored before the archives are proven whole: sizes and sha256s match the manifest,
``pg_restore --list`` reads the dump, its schema revision is one this code knows, and every member
of the files archive stays inside its folder. Format 1 manifests (database only) still restore.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psycopg
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import make_url

from wingman import __version__
from wingman.config import PublicSettings
from wingman.db.migrations import alembic_config, head_revision
from wingman.devstack.binaries import find_postgres
from wingman.ops.backup_files import (
    FilesArchive,
    FilesRefused,
    files_path,
    verify_files,
    write_files_archive,
)
from wingman.ops.checksums import sha256_of

Report = Callable[[str], None]
# 2 added ``files`` (the proxy's folders); format 1 manifests are read as "no files".
MANIFEST_FORMAT = 2
READABLE_FORMATS = (1, 2)
_NAME = re.compile(r"^wingman-\d{8}T\d{6}Z(?:-\d+)?$")
# pg_restore --verbose prints one of these per archive entry it restores (after the drops).
_RESTORED_ENTRY = re.compile(r"^pg_restore: (?:creating|processing) ", re.MULTILINE)
# How often a long pg_dump / pg_restore reports its progress.
PROGRESS_EVERY_S = 2.0


class BackupError(RuntimeError):
    """A backup could not be made (the message says which step failed and why)."""


class BackupRefused(RuntimeError):
    """An archive is corrupt, truncated, unknown or incompatible; nothing was touched."""


class BackupManifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: int
    file: str
    wingman_version: str
    # The code's head when the backup was made, and the revision recorded in the database.
    migration_head: str
    database_revision: str | None
    postgres_version: str
    postgres_major: int
    database: str
    size: int
    sha256: str
    created_at: datetime
    # The proxy's folders; None when the host had none (or the manifest is format 1).
    files: FilesArchive | None = None
    # Folders that existed but could not be read by the user who made the backup.
    files_skipped: list[str] = msgspec.field(default_factory=list)


class BackupEntry(msgspec.Struct, kw_only=True):
    """One backup in ``backup list``: its manifest and whether the archive's size matches."""

    name: str
    created_at: datetime
    size: int
    migration_head: str
    wingman_version: str
    ok: bool
    problem: str | None = None
    # The files archive's size, None when the backup holds no folders.
    files_size: int | None = None


class Connection(msgspec.Struct, frozen=True):
    """libpq parameters for the client tools; the password travels only in PGPASSWORD.

    A URL may name several servers, as SQLAlchemy spells it (``?host=h1:5432&host=h2:5432``,
    e.g. a Patroni cluster's members, docs/scale-out.md); libpq then takes comma-separated
    ``host`` and ``port`` lists and tries them in order, and ``target_session_attrs=read-write``
    makes it pass over standbys, so the tools reach the primary wherever it is.
    """

    host: str
    port: str
    user: str
    password: str
    database: str
    target_session_attrs: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Connection:
        parsed = make_url(url)
        hosts, ports = _multihost(parsed.query.get("host", ()))
        attrs = parsed.query.get("target_session_attrs")
        return cls(
            host=hosts or parsed.host or "127.0.0.1",
            port=ports or str(parsed.port or 5432),
            user=parsed.username or "wingman",
            password=parsed.password or "",
            database=parsed.database or "wingman",
            target_session_attrs=attrs if isinstance(attrs, str) else None,
        )

    def args(self) -> list[str]:
        return ["--host", self.host, "--port", self.port, "--username", self.user]

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self.password:
            env["PGPASSWORD"] = self.password
        if self.target_session_attrs:
            env["PGTARGETSESSIONATTRS"] = self.target_session_attrs
        return env

    def conninfo(self) -> str:
        extra = {"target_session_attrs": self.target_session_attrs}
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.database,
            connect_timeout=5,
            **{key: value for key, value in extra.items() if value},
        )


def _multihost(value: str | tuple[str, ...]) -> tuple[str, str]:
    """``host`` query values (``h1:5432``, ``h2``) as libpq's host and port lists ("" if none)."""
    entries = (value,) if isinstance(value, str) else value
    hosts, ports = [], []
    for entry in entries:
        if entry.startswith("["):  # [::1]:5432
            host, _, rest = entry[1:].partition("]")
            port = rest.removeprefix(":")
        elif entry.count(":") == 1:
            host, _, port = entry.partition(":")
        else:  # a bare name, IPv4 address or IPv6 address without a port
            host, port = entry, ""
        hosts.append(host)
        ports.append(port or "5432")
    return ",".join(hosts), ",".join(ports)


# -- helpers -----------------------------------------------------------------------------------


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name.removesuffix(".dump") + ".manifest.json")


def dump_path(path: Path) -> Path:
    """The archive a user named, given either the ``.dump`` or its ``.manifest.json``."""
    if path.name.endswith(".manifest.json"):
        return path.with_name(path.name.removesuffix(".manifest.json") + ".dump")
    return path


def client_tool(tool: str, server_major: int) -> str:
    """``pg_dump``/``pg_restore`` of the server's major version (or a newer one, which can read
    an older server); refused when only older tools exist, since those cannot."""
    exact = Path(f"/usr/lib/postgresql/{server_major}/bin/{tool}")
    if exact.is_file():
        return str(exact)
    binaries = find_postgres()
    if binaries.major < server_major:
        raise BackupError(
            f"{tool} {binaries.major} cannot handle a PostgreSQL {server_major} server; "
            f"install postgresql-client-{server_major}"
        )
    return binaries[tool]


def server_facts(connection: Connection) -> tuple[str, int, str | None]:
    """Server version string and major, and the revision recorded in ``alembic_version``."""
    with psycopg.connect(connection.conninfo()) as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        number = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        has_table = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()
        revision = None
        if has_table and has_table[0] is not None:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = str(row[0]) if row else None
    return version, number // 10000, revision


def _run_with_progress(
    command: list[str], env: dict[str, str], report: Report, describe: Callable[[], str]
) -> subprocess.CompletedProcess[str]:
    """Run ``command``, calling ``report(describe())`` every few seconds while it works."""
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        last = time.monotonic()
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() - last >= PROGRESS_EVERY_S:
                    report(describe())
                    last = time.monotonic()
        return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


# -- backup ------------------------------------------------------------------------------------


def _new_name(folder: Path, now: datetime) -> str:
    base = f"wingman-{now:%Y%m%dT%H%M%SZ}"
    name, n = base, 1
    while any(
        path.exists()
        for path in (
            folder / f"{name}.dump",
            manifest_path(folder / f"{name}.dump"),
            files_path(folder / f"{name}.dump"),
        )
    ):
        name, n = f"{base}-{n}", n + 1
    return name


def create_backup(
    database_url: str,
    folder: Path,
    keep: int,
    report: Report,
    public: PublicSettings | None = None,
) -> BackupManifest:
    """Dump the database into ``folder``, save the proxy's folders named by ``public`` (when
    given and present), write the manifest, then keep only the newest ``keep`` backups."""
    connection = Connection.from_url(database_url)
    try:
        version, major, revision = server_facts(connection)
    except psycopg.Error as exc:
        raise BackupError(f"cannot reach the database: {exc}") from None
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.now(UTC)
    name = _new_name(folder, now)
    target = folder / f"{name}.dump"
    partial = folder / f"{name}.dump.partial"
    report(f"dumping {connection.database} (PostgreSQL {version}) to {target}")
    # Owner-only from the first byte: the archive holds every user's data.
    partial.touch(mode=0o600)
    command = [
        client_tool("pg_dump", major),
        *connection.args(),
        "--format=custom",
        "--no-password",
        "--file",
        str(partial),
        connection.database,
    ]

    def size_so_far() -> str:
        return f"dumping… {_human(partial.stat().st_size)} written"

    result = _run_with_progress(command, connection.environ(), report, size_so_far)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed (exit {result.returncode}): {result.stderr.strip()}")
    with partial.open("rb") as fh:
        os.fsync(fh.fileno())
    partial.rename(target)
    files: FilesArchive | None = None
    skipped: list[str] = []
    if public is not None:
        try:
            files, skipped = write_files_archive(files_path(target), public, report)
        except OSError as exc:
            target.unlink(missing_ok=True)
            raise BackupError(f"cannot save the proxy's folders: {exc}") from None
    report("computing the checksum")
    manifest = BackupManifest(
        format=MANIFEST_FORMAT,
        file=target.name,
        wingman_version=__version__,
        migration_head=head_revision(),
        database_revision=revision,
        postgres_version=version,
        postgres_major=major,
        database=connection.database,
        size=target.stat().st_size,
        sha256=sha256_of(target),
        created_at=now,
        files=files,
        files_skipped=skipped,
    )
    _write_private(manifest_path(target), msgspec.json.format(msgspec.json.encode(manifest)))
    if files is not None:
        report(
            f"wrote {target.name} ({_human(manifest.size)}), {files.file} "
            f"({_human(files.size)}) and their manifest"
        )
    else:
        report(f"wrote {target.name} ({_human(manifest.size)}) and its manifest")
    for removed in apply_retention(folder, keep):
        report(f"retention: removed {removed}")
    return manifest


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_manifest(path: Path) -> BackupManifest:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BackupRefused(f"{path.name}: cannot read the manifest ({exc.strerror})") from None
    try:
        # The format first: a newer one may hold fields this code cannot decode.
        header = msgspec.json.decode(raw, type=_FormatOnly)
    except msgspec.DecodeError as exc:
        raise BackupRefused(f"{path.name}: the manifest is damaged ({exc})") from None
    if header.format not in READABLE_FORMATS:
        raise BackupRefused(
            f"{path.name}: manifest format {header.format} is newer than this version reads "
            f"({max(READABLE_FORMATS)}); upgrade Wingman first"
        )
    try:
        manifest = msgspec.json.decode(raw, type=BackupManifest)
    except msgspec.DecodeError as exc:
        raise BackupRefused(f"{path.name}: the manifest is damaged ({exc})") from None
    if manifest.format == 1 and manifest.files is not None:
        raise BackupRefused(f"{path.name}: the manifest is damaged (format 1 lists files)")
    return manifest


class _FormatOnly(msgspec.Struct):
    format: int


def _manifests(folder: Path) -> list[tuple[Path, BackupManifest]]:
    found = []
    for path in folder.glob("wingman-*.manifest.json"):
        if not _NAME.match(path.name.removesuffix(".manifest.json")):
            continue
        try:
            found.append((path, read_manifest(path)))
        except BackupRefused:
            continue
    return sorted(found, key=lambda item: item[1].created_at, reverse=True)


def apply_retention(folder: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` backups (archives and manifest); returns their names."""
    removed = []
    for path, manifest in _manifests(folder)[keep:]:
        (folder / manifest.file).unlink(missing_ok=True)
        if manifest.files is not None:
            (folder / manifest.files.file).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        removed.append(manifest.file)
    return removed


def list_backups(folder: Path) -> list[BackupEntry]:
    """Every backup in ``folder``, newest first, with a cheap size check of its archives."""
    entries = []
    for _, manifest in _manifests(folder):
        archive = folder / manifest.file
        problem = None
        if not archive.is_file():
            problem = "archive missing"
        elif archive.stat().st_size != manifest.size:
            problem = f"size {archive.stat().st_size} differs from the manifest's {manifest.size}"
        elif manifest.files is not None:
            files = folder / manifest.files.file
            if not files.is_file():
                problem = "files archive missing"
            elif files.stat().st_size != manifest.files.size:
                problem = (
                    f"{files.name}: size {files.stat().st_size} differs from the manifest's "
                    f"{manifest.files.size}"
                )
        entries.append(
            BackupEntry(
                name=manifest.file,
                created_at=manifest.created_at,
                size=manifest.size,
                migration_head=manifest.database_revision or manifest.migration_head,
                wingman_version=manifest.wingman_version,
                ok=problem is None,
                problem=problem,
                files_size=manifest.files.size if manifest.files else None,
            )
        )
    return entries


def latest_backup(folder: Path) -> BackupManifest | None:
    manifests = _manifests(folder) if folder.is_dir() else []
    return manifests[0][1] if manifests else None


# -- restore -----------------------------------------------------------------------------------


def _known_revision(revision: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config(""))
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def verify_backup(
    path: Path, report: Report, server_major: int | None = None, *, need_files: bool = False
) -> BackupManifest:
    """Prove a backup whole and restorable by this code, or raise :class:`BackupRefused`.

    The files archive, when the manifest lists one, is verified too; a missing one is refused
    only when ``need_files`` (the restore puts the folders back)."""
    archive = dump_path(path)
    manifest_file = manifest_path(archive)
    if not archive.is_file():
        raise BackupRefused(f"{archive}: no such archive")
    if not manifest_file.is_file():
        raise BackupRefused(
            f"{archive.name}: no manifest ({manifest_file.name}) beside it; "
            "only archives made by `wingmanctl backup` can be restored"
        )
    manifest = read_manifest(manifest_file)
    if manifest.file != archive.name:
        raise BackupRefused(f"{manifest_file.name} describes {manifest.file}, not {archive.name}")
    size = archive.stat().st_size
    if size != manifest.size:
        raise BackupRefused(
            f"{archive.name} is truncated or altered: {size} bytes, the manifest says "
            f"{manifest.size}"
        )
    report(f"verifying the checksum of {archive.name} ({_human(size)})")
    if sha256_of(archive) != manifest.sha256:
        raise BackupRefused(f"{archive.name} is corrupt: its sha256 differs from the manifest's")
    revision = manifest.database_revision or manifest.migration_head
    if not _known_revision(revision):
        raise BackupRefused(
            f"{archive.name} was made by a newer Wingman ({manifest.wingman_version}, schema "
            f"revision {revision}) that this version does not know; upgrade Wingman first"
        )
    if server_major is not None and manifest.postgres_major > server_major:
        raise BackupRefused(
            f"{archive.name} comes from PostgreSQL {manifest.postgres_major}; this server is "
            f"{server_major}"
        )
    listing = subprocess.run(
        [
            client_tool("pg_restore", server_major or manifest.postgres_major),
            "--list",
            str(archive),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        raise BackupRefused(
            f"{archive.name} is not a readable archive: "
            f"{listing.stderr.strip() or 'pg_restore failed'}"
        )
    _verify_files_part(archive, manifest, report, need_files=need_files)
    return manifest


def _verify_files_part(
    archive: Path, manifest: BackupManifest, report: Report, *, need_files: bool
) -> None:
    if manifest.files is None:
        return
    files = files_path(archive)
    if manifest.files.file != files.name:
        raise BackupRefused(f"the manifest names {manifest.files.file}, not {files.name}")
    if not files.is_file() and not need_files:
        report(f"warning: {files.name} is missing; only the database can be restored")
        return
    try:
        verify_files(files, manifest.files, report)
    except FilesRefused as exc:
        raise BackupRefused(str(exc)) from None


def restore_backup(archive: Path, database_url: str, report: Report) -> None:
    """``pg_restore --clean --if-exists --single-transaction`` into the configured database.

    One transaction: a failure leaves the database as it was. The caller has stopped writers and
    verified the archive.
    """
    connection = Connection.from_url(database_url)
    _, major, _ = server_facts(connection)
    restore = client_tool("pg_restore", major)
    listing = subprocess.run(
        [restore, "--list", str(archive)], capture_output=True, text=True, check=False
    )
    total = sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))
    # pg_restore's messages go to a private temporary file, read for progress and errors.
    log_fd, log_name = tempfile.mkstemp(prefix="wingman-restore-", suffix=".log")
    os.close(log_fd)
    log = Path(log_name)
    command = [
        restore,
        *connection.args(),
        "--no-password",
        "--dbname",
        connection.database,
        "--clean",
        "--if-exists",
        "--single-transaction",
        # Objects belong to the configured role, whoever owned them where the dump was made.
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--verbose",
        str(archive),
    ]
    report(f"restoring {total} archive entries into {connection.database}")
    # --verbose names each entry on stderr: counting them gives the progress.
    with log.open("w") as err:
        proc = subprocess.Popen(
            command,
            env=connection.environ(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        last = time.monotonic()
        while proc.poll() is None:
            time.sleep(0.5)
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                done = len(_RESTORED_ENTRY.findall(log.read_text(errors="replace")))
                report(f"restoring… {done}/{total} entries")
                last = time.monotonic()
    output = log.read_text(errors="replace")
    log.unlink(missing_ok=True)
    if proc.returncode != 0:
        errors = [line for line in output.splitlines() if "error" in line.lower()]
        raise BackupError(
            f"pg_restore failed (exit {proc.returncode}); the database was left unchanged: "
            + ("; ".join(errors[-3:]) or output.strip()[-500:])
        )


def backup_age_seconds(folder: Path, now: datetime | None = None) -> float | None:
    latest = latest_backup(folder)
    if latest is None:
        return None
    return ((now or datetime.now(UTC)) - latest.created_at).total_seconds()
