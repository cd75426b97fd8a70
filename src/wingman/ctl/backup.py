"""``wingmanctl backup``, ``backup list`` and ``restore``: pg_dump archives with manifests."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import click
import msgspec

from wingman.ctl.layout import layout_option, resolve
from wingman.ctl.output import (
    EXIT_DEGRADED,
    EXIT_DOWN,
    EXIT_USAGE,
    emit_report,
    json_option,
    progress,
)

LIST_COLUMNS = ["name", "created_at", "size", "migration_head", "wingman_version", "ok", "problem"]


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
    """Back up the database: a pg_dump custom-format archive and a checksummed manifest.

    \b
    Writes <folder>/wingman-<UTC time>.dump (owner-only) and wingman-<UTC time>.manifest.json
    (Wingman version, schema revision, PostgreSQL version, size, sha256, time), then deletes
    all but the newest --keep backups. Web and workers keep running: pg_dump reads one
    consistent snapshot. Prints the manifest.

    Exit status: 0 written, 2 failed (nothing is left half-written).
    """
    if ctx.invoked_subcommand is not None:
        return
    from wingman.ops.backups import BackupError, create_backup

    source, settings = resolve(data_dir)
    target = folder or source.default_backup_dir(settings)
    try:
        manifest = create_backup(
            settings.database.url, target, keep or settings.backup.keep, report=progress
        )
    except BackupError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    data = msgspec.to_builtins(manifest)
    data["path"] = str(target / manifest.file)
    emit_report(
        data, [{"key": k, "value": v} for k, v in data.items()], ["key", "value"], as_json=as_json
    )


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
    """List backups, newest first, checking each archive's size against its manifest.

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
@layout_option
def restore(file: Path, yes: bool, data_dir: Path | None) -> None:
    """Replace the database with backup FILE (the .dump or its .manifest.json).

    \b
    Steps, each reported on stderr:
      1. verify: the manifest exists, size and sha256 match, pg_restore can read the
         archive, its schema revision is known to this version, its PostgreSQL major is
         not newer than the server's; a corrupt, truncated or foreign file is refused
         before anything is touched;
      2. ask for confirmation (unless --yes);
      3. stop web and workers (systemd units in the appliance, processes in development);
      4. pg_restore --clean --if-exists --single-transaction (all or nothing);
      5. migrate to head;
      6. start web and workers again.

    \b
    Exit status:
      0   restored
      1   not confirmed
      2   the database is unreachable or the restore failed (writers are started again;
          a failed pg_restore leaves the database unchanged)
      64  the file was refused (corrupt, truncated, unknown or incompatible)
    """
    from wingman.db.migrations import upgrade_to_head
    from wingman.ops.backups import (
        BackupError,
        BackupRefused,
        Connection,
        dump_path,
        restore_backup,
        server_facts,
        verify_backup,
    )

    source, settings = resolve(data_dir)
    url = settings.database.url
    try:
        _, server_major, _ = server_facts(Connection.from_url(url))
    except Exception as exc:  # noqa: BLE001 - a connection failure, reported in one line
        click.echo(f"error: cannot reach the database: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    try:
        manifest = verify_backup(file, report=progress, server_major=server_major)
    except (BackupRefused, BackupError) as exc:
        click.echo(f"error: refused: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    progress(
        f"{manifest.file}: whole ({manifest.size} bytes, sha256 ok), made "
        f"{manifest.created_at:%Y-%m-%d %H:%M:%S} UTC by Wingman {manifest.wingman_version}"
    )
    database = Connection.from_url(url).database
    if not yes and not click.confirm(
        f"Replace every row of database {database!r} with this backup? "
        "Web and workers stop while it runs",
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
    failed: str | None = None
    try:
        restore_backup(dump_path(file), url, report=progress)
        progress("restored; migrating to head")
        upgrade_to_head(url)
        progress("database is at head")
    except BackupError as exc:
        failed = str(exc)
    except Exception as exc:  # noqa: BLE001 - migrations failing after a restore, in one line
        failed = f"migrations after the restore failed: {exc}"
    progress("starting web and workers")
    try:
        source.start_writers(progress)
    except Exception as exc:  # noqa: BLE001 - reported; the restore itself is the main result
        click.echo(f"error: web and workers did not start again: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    if failed:
        click.echo(f"error: {failed}", err=True)
        raise SystemExit(EXIT_DOWN)
    progress(f"restore of {manifest.file} complete")
