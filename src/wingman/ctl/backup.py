"""``wingmanctl backup``, ``backup list`` and ``restore``: pg_dump archives, the front proxy's
folders and checksummed manifests."""

from __future__ import annotations

import contextlib
import subprocess
import tarfile
from pathlib import Path

import click
import msgspec

from wingman.config import PublicSettings
from wingman.ctl.layout import layout_option, resolve
from wingman.ctl.output import (
    EXIT_DEGRADED,
    EXIT_DOWN,
    EXIT_USAGE,
    emit_report,
    json_option,
    progress,
)
from wingman.ops.backup_files import (
    FilesArchive,
    FilesRefused,
    RestoredFolder,
    files_path,
    restore_files,
)

LIST_COLUMNS = [
    "name",
    "created_at",
    "size",
    "files_size",
    "migration_head",
    "wingman_version",
    "ok",
    "problem",
]


@click.group(invoke_without_command=True)
@click.option(
    "--to",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the archive (default: backup.dir; <data dir>/backups in development).",
)
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    help="Keep this many newest backups, delete older ones (default: backup.keep, 7).",
)
@layout_option
@json_option
@click.pass_context
def backup(
    ctx: click.Context, folder: Path | None, keep: int | None, data_dir: Path | None, as_json: bool
) -> None:
    """Back up the database and the front proxy's folders, with a checksummed manifest.

    \b
    Writes <folder>/wingman-<UTC time>.dump (pg_dump custom format, owner-only),
    wingman-<UTC time>.files.tar (owner-only: public.state_dir, the proxy's storage with the
    internal CA and its keys, the ACME account and certificates, and public.cert_dir, an
    imported certificate and key; only when this host has them) and
    wingman-<UTC time>.manifest.json (Wingman version, schema revision, PostgreSQL version,
    sizes, sha256s, the folders saved, time), then deletes all but the newest --keep backups.
    Web and workers keep running: pg_dump reads one consistent snapshot. Prints the manifest.

    Exit status: 0 written, 2 failed (nothing is left half-written).
    """
    if ctx.invoked_subcommand is not None:
        return
    from wingman.ops.backups import BackupError, create_backup

    source, settings = resolve(data_dir)
    target = folder or source.default_backup_dir(settings)
    try:
        manifest = create_backup(
            settings.database.effective_direct_url,
            target,
            keep or settings.backup.keep,
            report=progress,
            public=settings.public,
        )
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    data = msgspec.to_builtins(manifest)
    data["path"] = str(target / manifest.file)
    data["files_path"] = str(target / manifest.files.file) if manifest.files else None
    rows = [{"key": k, "value": v} for k, v in data.items() if k != "files"]
    if manifest.files is not None:
        files = manifest.files
        rows += [
            {"key": "files", "value": f"{files.file} ({files.size} bytes)"},
            {"key": "files_sha256", "value": files.sha256},
            *(
                {"key": f"files: {f.name}", "value": f"{f.path} ({f.entries} entries)"}
                for f in files.folders
            ),
        ]
    else:
        rows.append({"key": "files", "value": "none (no proxy folders here)"})
    emit_report(data, rows, ["key", "value"], as_json=as_json)


@backup.command("list")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to list (default: backup.dir; <data dir>/backups in development).",
)
@layout_option
@json_option
def list_command(folder: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List backups, newest first, checking each archive's size (the dump's and the files
    archive's) against its manifest.

    Exit status: 0 all whole, 1 when an archive is missing or its size differs.
    """
    from wingman.ops.backups import list_backups

    if folder is None:
        source, settings = resolve(data_dir)
        folder = source.default_backup_dir(settings)
    entries = list_backups(folder) if folder.is_dir() else []
    rows = [msgspec.to_builtins(entry) for entry in entries]
    emit_report({"folder": str(folder), "backups": rows}, rows, LIST_COLUMNS, as_json=as_json)
    if any(not entry.ok for entry in entries):
        raise SystemExit(EXIT_DEGRADED)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--with-files",
    is_flag=True,
    help=(
        "Also put back the front proxy's folders (public.state_dir, public.cert_dir) from the "
        "backup's .files.tar. Without it this host keeps its own certificates and CA."
    ),
)
@layout_option
@json_option
def restore(file: Path, yes: bool, with_files: bool, data_dir: Path | None, as_json: bool) -> None:
    """Replace the database with backup FILE (the .dump or its .manifest.json), and with
    --with-files the front proxy's folders too.

    \b
    Steps, each reported on stderr:
      1. verify: the manifest exists, size and sha256 match, pg_restore can read the
         archive, its schema revision is known to this version, its PostgreSQL major is
         not newer than the server's; the files archive's size and sha256 match and no
         member is absolute, holds '..', is a special file or links out of its folder;
         a corrupt, truncated, unsafe or foreign file is refused before anything is touched;
      2. ask for confirmation (unless --yes);
      3. stop web and workers (systemd units in the appliance, processes in development);
      4. pg_restore --clean --if-exists --single-transaction (all or nothing);
      5. migrate to head;
      6. with --with-files: replace each saved folder at this host's public.state_dir /
         public.cert_dir (extracted beside it, swapped in by rename, the old copy removed);
      7. start web and workers again; with --with-files restart the front proxy in the
         appliance (elsewhere: restart it yourself so it reads the restored storage).

    \b
    Exit status:
      0   restored
      1   not confirmed
      2   the database is unreachable or the restore failed (writers are started again;
          a failed pg_restore leaves the database unchanged)
      64  the file was refused (corrupt, truncated, unknown or incompatible)
    """
    from wingman.ops.backups import (
        BackupError,
        BackupRefused,
        Connection,
        dump_path,
        server_facts,
        verify_backup,
    )

    source, settings = resolve(data_dir)
    url = settings.database.effective_direct_url
    try:
        _, server_major, _ = server_facts(Connection.from_url(url))
    except Exception as exc:  # noqa: BLE001 - a connection failure, reported in one line
        click.echo(f"error: cannot reach the database: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    try:
        manifest = verify_backup(
            file, report=progress, server_major=server_major, need_files=with_files
        )
    except (BackupRefused, BackupError) as exc:
        click.echo(f"error: refused: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    progress(
        f"{manifest.file}: whole ({manifest.size} bytes, sha256 ok), made "
        f"{manifest.created_at:%Y-%m-%d %H:%M:%S} UTC by Wingman {manifest.wingman_version}"
    )
    files = manifest.files
    restoring_files = _announce_files(files, with_files)
    database = Connection.from_url(url).database
    question = f"Replace every row of database {database!r}"
    if restoring_files:
        question += " and the proxy's certificates and CA"
    if not yes and not click.confirm(
        f"{question} with this backup? Web and workers stop while it runs",
        err=True,
    ):
        click.echo("not confirmed; nothing was changed", err=True)
        raise SystemExit(EXIT_DEGRADED)
    progress("stopping web and workers")
    try:
        source.stop_writers(progress)
    except subprocess.CalledProcessError as exc:
        click.echo(f"error: could not stop web and workers ({exc}); nothing was restored", err=True)
        # Best effort: bring back whatever did stop.
        with contextlib.suppress(subprocess.CalledProcessError):
            source.start_writers(progress)
        raise SystemExit(EXIT_DOWN) from None
    failed = _restore_database(dump_path(file), url)
    restored: list[RestoredFolder] = []
    if restoring_files and files is not None and failed is None:
        failed, restored = _restore_folders(dump_path(file), files, settings.public)
    progress("starting web and workers")
    try:
        source.start_writers(progress)
    except Exception as exc:  # noqa: BLE001 - reported; the restore itself is the main result
        click.echo(f"error: web and workers did not start again: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    proxy_action = _proxy_after(source.kind) if restored else None
    if failed:
        click.echo(f"error: {failed}", err=True)
        raise SystemExit(EXIT_DOWN)
    progress(f"restore of {manifest.file} complete")
    if as_json:
        report = {
            "file": manifest.file,
            "database": {"name": database, "revision": manifest.database_revision},
            "files": {
                "archive": files.file if files else None,
                "restored": [msgspec.to_builtins(folder) for folder in restored],
                "left_alone": files is not None and not with_files,
            },
            "proxy": proxy_action,
        }
        click.echo(msgspec.json.encode(report).decode())


def _announce_files(files: FilesArchive | None, with_files: bool) -> bool:
    """Say what happens to the proxy's folders; True when they are to be restored."""
    if files is not None:
        progress(
            f"{files.file}: whole ({files.size} bytes, sha256 ok, members safe), holds "
            + ", ".join(f"{f.path} ({f.entries} entries)" for f in files.folders)
        )
    if with_files and files is None:
        progress("the backup holds no proxy folders: only the database is restored")
    elif not with_files and files is not None:
        progress("the proxy's folders are left as they are (--with-files restores them)")
    return with_files and files is not None


def _restore_folders(
    archive: Path, files: FilesArchive, public: PublicSettings
) -> tuple[str | None, list[RestoredFolder]]:
    progress("restoring the proxy's folders")
    restored: list[RestoredFolder] = []
    try:
        restore_files(files_path(archive), files, public, progress, restored)
    except (OSError, tarfile.TarError, FilesRefused) as exc:
        done = ", ".join(folder.path for folder in restored) or "none"
        return f"the proxy's folders were not all restored (restored: {done}): {exc}", restored
    return None, restored


def _restore_database(archive: Path, url: str) -> str | None:
    """pg_restore, then migrate to head; returns why it failed, or None."""
    from wingman.db.migrations import upgrade_to_head
    from wingman.ops.backups import BackupError, restore_backup

    try:
        restore_backup(archive, url, report=progress)
        progress("restored; migrating to head")
        upgrade_to_head(url)
        progress("database is at head")
    except BackupError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - migrations failing after a restore, in one line
        return f"migrations after the restore failed: {exc}"
    return None


def _proxy_after(kind: str) -> str:
    """Restart the appliance's proxy on the restored storage, or say who must."""
    from wingman.ops import proxy

    if kind != "appliance":
        message = (
            "restart the front proxy so it reads the restored certificates and CA "
            "(on the appliance: systemctl restart wingman-proxy)"
        )
        progress(message)
        return message
    try:
        done = proxy.restart_running()
    except proxy.ProxyConfigError as exc:
        done = f"{exc}: run systemctl restart wingman-proxy"
        click.echo(f"warning: {done}", err=True)
        return done
    progress(done)
    return done
