"""``wingmanctl upgrade``: install an upgrade bundle, migrate, restart; roll back on failure."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wingman.ctl.layout import layout_option, resolve
from wingman.ctl.output import (
    EXIT_DEGRADED,
    EXIT_DOWN,
    EXIT_OK,
    EXIT_USAGE,
    emit_object,
    emit_report,
    json_option,
    progress,
)

if TYPE_CHECKING:
    from wingman.config import Settings
    from wingman.ops.bundles import Bundle, Installed
    from wingman.ops.units import UnitSource

STEP_COLUMNS = ["step", "ok", "result", "seconds"]


@click.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option(
    "--check",
    is_flag=True,
    help="Only report: installed version, the database's schema revision, and with BUNDLE its "
    "version, the migrations it would apply and what pip would install. Changes nothing.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--no-backup",
    is_flag=True,
    help="Skip the pre-upgrade backup (then a failed migration can only be undone with an "
    "older backup).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also install a bundle that is not newer: reinstall the same version, or downgrade "
    "when the database's schema revision is one the bundle knows.",
)
@click.option(
    "--venv",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="WINGMAN_VENV",
    help="The Python environment to upgrade (env WINGMAN_VENV; default: the one running this "
    "command, /opt/wingman in the appliance).",
)
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=120,
    show_default=True,
    help="Seconds to wait for /health/ready after starting web and workers.",
)
@layout_option
@json_option
def upgrade(  # noqa: PLR0917 - one parameter per click option
    bundle: Path | None,
    check: bool,
    yes: bool,
    no_backup: bool,
    force: bool,
    venv: Path | None,
    timeout: int,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Upgrade Wingman from BUNDLE (made by `scripts/build-bundle`), or --check what it would do.

    \b
    BUNDLE is wingman-<version>-bundle.tar or the folder it unpacks to: the wingman wheel and
    its dependencies' wheels with a manifest of sizes and sha256 sums; it installs offline.
    Steps, each reported on stderr:
      1. verify: every wheel matches the manifest (size, sha256, zip CRCs), exactly one is
         Wingman's, newer than the installed one (unless --force), its migrations know the
         database's revision, and `pip install --dry-run` accepts it; a missing, corrupt or
         unfit bundle is refused before anything is touched;
      2. keep a copy of the environment as <venv>.previous (after confirmation or --yes);
      3. stop web and workers (systemctl stop in the appliance, processes in development);
      4. take a pre-upgrade backup (`wingmanctl backup`; skipped with --no-backup);
      5. pip install --no-index --find-links <bundle>/wheels into the environment;
      6. check that the new code imports and reports the bundle's version;
      7. migrate the database to the new head (the new code's migrations);
      8. start web and workers again;
      9. wait for /health/ready.
    When a step from 5 on fails, <venv>.previous is moved back; if the database is still at
    its old revision the old version is started again, otherwise web and workers stay
    stopped and the message names the backup to restore with `wingmanctl restore FILE`.
    The appliance is upgraded as root; a development stack (--data-dir) is restarted from
    the upgraded environment; the settings-only layout is refused (nothing to stop).

    \b
    Exit status:
      0   upgraded (or already at the bundle's version); --check: nothing to do
      1   not confirmed; --check: an upgrade or migrations are pending
      2   failed and rolled back (the old version serves again), or the database is
          unreachable; nothing was changed
      3   failed, and web and workers stay stopped (the message says what to restore)
      64  the bundle or the environment was refused (missing, corrupt, not newer, editable)
      77  not run as root in the appliance
    """
    if bundle is None and not check:
        _refuse("give BUNDLE (or --check to report without one)")
    source, settings = resolve(data_dir)
    if not check:
        _require_control(source)
    target = (venv or Path(sys.prefix)).absolute()
    with tempfile.TemporaryDirectory(prefix="wingman-bundle-") as scratch:
        plan = _plan(target, settings.database.effective_direct_url, bundle, Path(scratch), force)
        plan.facts["layout"] = source.kind
        if check:
            _emit_check(plan, as_json)
        _apply(
            plan,
            source,
            settings,
            yes=yes,
            backup=not no_backup,
            force=force,
            timeout=timeout,
            as_json=as_json,
        )


@dataclass
class Plan:
    """What --check shows and the upgrade acts on: the installation, the database, the bundle."""

    installed: Installed
    revision: str | None
    facts: dict[str, Any]
    bundle: Bundle | None = None
    # -1, 0, 1: the bundle is older than, the same as, newer than the installed version.
    newer: int = 0
    pending: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _require_control(source: UnitSource) -> None:
    from wingman.ops.upgrades import EXIT_NOPERM

    if source.kind == "appliance" and os.geteuid() != 0:
        click.echo(
            "error: the appliance is upgraded as root: run `wingmanctl upgrade` as root", err=True
        )
        raise SystemExit(EXIT_NOPERM)
    if source.kind == "settings-only":
        _refuse(
            "web and workers are not managed from here (WINGMAN_CONFIG without --data-dir): "
            "upgrade on the appliance, or give the dev stack's --data-dir"
        )


def _plan(target: Path, url: str, bundle: Path | None, scratch: Path, force: bool) -> Plan:
    """Read the installation, the database and the bundle; refuse (exit 64) what cannot go."""
    from wingman.db.migrations import script_location
    from wingman.ops.bundles import (
        BundleRefused,
        compare_versions,
        head_of,
        installed_in,
        pending_between,
        revisions_in_folder,
    )
    from wingman.ops.upgrades import database_revision, dry_run

    try:
        installed = installed_in(target)
    except BundleRefused as exc:
        _refuse(str(exc))
    try:
        revision = database_revision(url)
    except Exception as exc:  # noqa: BLE001 - a connection failure, reported in one line
        click.echo(f"error: cannot reach the database: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    revisions = []
    if installed.migrations is not None:
        revisions = revisions_in_folder(installed.migrations)
    elif Path(sys.prefix).resolve() == target.resolve():
        revisions = revisions_in_folder(script_location() / "versions")
    plan = Plan(
        installed=installed,
        revision=revision,
        facts={
            "venv": str(target),
            "installed_version": installed.version,
            "editable": installed.editable,
            "installed_head": head_of(revisions) if revisions else None,
            "database_revision": revision,
            "database_pending": _pending_or_none(revisions, revision),
        },
    )
    if bundle is None:
        return plan
    started = time.monotonic()
    try:
        found = _open(bundle, scratch)
        plan.newer = compare_versions(installed.version, found.version)
        plan.pending = pending_between(found.revisions, revision)
        if plan.newer < 0 and not force:
            raise BundleRefused(
                f"the bundle holds Wingman {found.version}, older than the installed "
                f"{installed.version} (--force downgrades)"
            )
        # The same version without --force installs nothing: no need to ask pip.
        reinstall = plan.newer == 0 and force
        would = dry_run(target, found, reinstall=reinstall) if plan.newer or force else []
    except BundleRefused as exc:
        _refuse(str(exc))
    plan.bundle = found
    plan.seconds = time.monotonic() - started
    plan.facts.update(
        bundle=str(bundle),
        bundle_version=found.version,
        bundle_head=found.manifest.migration_head,
        bundle_migrations=plan.pending,
        would_install=would,
    )
    return plan


def _apply(
    plan: Plan,
    source: UnitSource,
    settings: Settings,
    *,
    yes: bool,
    backup: bool,
    force: bool,
    timeout: int,
    as_json: bool,
) -> None:
    import msgspec

    from wingman.ops.upgrades import StepResult, Upgrade

    installed, found = plan.installed, plan.bundle
    assert found is not None  # noqa: S101 - BUNDLE is required without --check
    if installed.editable:
        _refuse(
            f"{installed.venv} runs Wingman from a source tree (editable install): update it "
            "with git and scripts/bootstrap, or give --venv"
        )
    if plan.newer == 0 and not force:
        click.echo(
            f"Wingman {found.version} is already installed in {installed.venv}; nothing to do "
            "(--force reinstalls)",
            err=True,
        )
        return
    verified = StepResult(
        step="verify",
        ok=True,
        result=f"Wingman {installed.version} → {found.version}; migrations: "
        f"{', '.join(plan.pending) or 'none'}",
        seconds=round(plan.seconds, 1),
    )
    progress(f"[1/9] verified: {verified.result}")
    if not yes and not click.confirm(
        f"Upgrade Wingman {installed.version} to {found.version} in {installed.venv}? Web and "
        "workers stop while it runs",
        err=True,
    ):
        click.echo("not confirmed; nothing was changed", err=True)
        raise SystemExit(EXIT_DEGRADED)
    with _exclusive(installed.venv):
        result = Upgrade(
            installed=installed,
            bundle=found,
            source=source,
            settings=settings,
            revision_before=plan.revision,
            backup_dir=source.default_backup_dir(settings) if backup else None,
            backup_keep=settings.backup.keep,
            reinstall=plan.newer == 0,
            ready_timeout=timeout,
            report=progress,
        ).run()
    result.steps.insert(0, verified)
    payload = msgspec.to_builtins(result)
    footer = f"outcome: {result.outcome} (Wingman {result.from_version} → {result.to_version})"
    if result.backup:
        footer += f"; pre-upgrade backup: {result.backup}"
    emit_report(payload, payload["steps"], STEP_COLUMNS, as_json=as_json, footer=footer)
    if result.error:
        click.echo(f"error: {result.error}", err=True)
    raise SystemExit(result.exit_code)


def _refuse(message: str) -> None:
    click.echo(f"error: refused: {message}", err=True)
    raise SystemExit(EXIT_USAGE)


def _pending_or_none(revisions: list[Any], current: str | None) -> list[str] | None:
    from wingman.ops.bundles import BundleRefused, pending_between

    if not revisions:
        return None
    try:
        return pending_between(revisions, current)
    except BundleRefused:
        return None


def _open(bundle: Path, scratch: Path) -> Bundle:
    """The verified bundle: a folder is read in place, a tar file is unpacked into ``scratch``."""
    from wingman.ops.bundles import BundleRefused, bundle_root, unpack, verify_bundle

    if bundle.is_dir():
        root = bundle_root(bundle, str(bundle))
    elif bundle.is_file():
        progress(f"unpacking {bundle.name}")
        root = unpack(bundle, scratch)
    else:
        raise BundleRefused(f"{bundle}: no such bundle")
    return verify_bundle(root, progress)


def _emit_check(plan: Plan, as_json: bool) -> None:
    report = plan.facts
    if plan.bundle is not None:
        newer = plan.newer
        if newer > 0:
            verdict = (
                f"upgrade available: {report['installed_version']} → {report['bundle_version']}"
            )
        elif newer < 0:
            verdict = f"the bundle is older ({report['bundle_version']}); --force downgrades"
        elif report["bundle_migrations"]:
            verdict = "same version; migrations pending"
        else:
            verdict = "up to date"
        pending = newer != 0 or bool(report["bundle_migrations"])
    else:
        pending = bool(report["database_pending"])
        verdict = "migrations pending (wingmanctl migrate)" if pending else "up to date"
    report["pending"] = pending
    report["verdict"] = verdict
    if as_json:
        emit_object(report, as_json=True)
    else:
        shown = {
            k: (", ".join(v) or "none") if isinstance(v, list) else v for k, v in report.items()
        }
        emit_object(shown, as_json=False)
    raise SystemExit(EXIT_DEGRADED if pending else EXIT_OK)


@contextlib.contextmanager
def _exclusive(venv: Path) -> Iterator[None]:
    """One upgrade of an environment at a time (a lock file beside it)."""
    lock = venv.with_name(f".{venv.name}.upgrade.lock")
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            click.echo(f"error: another upgrade of {venv} is running", err=True)
            raise SystemExit(EXIT_DOWN) from None
        yield
