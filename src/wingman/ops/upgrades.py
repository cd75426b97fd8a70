"""Upgrading Wingman's Python environment from a bundle, with a way back at every step.

The environment is upgraded in place (systemd units and the dev stack run ``<venv>/bin/...``
by path), after a full copy of it is kept beside it as ``<venv>.previous``. Steps::

    snapshot   copy <venv> to <venv>.previous (while everything still runs)
    stop       web and workers (systemctl stop; the dev stack's processes)
    backup     pg_dump of the quiet database, with its manifest (unless --no-backup)
    install    pip install --no-index --find-links <bundle>/wheels <every wheel of the bundle>
    check      the new environment imports the app and the worker and reports the new version
    migrate    <venv>/bin/python -m wingman.ctl migrate: the new code's migrations, to head
    start      web and workers (systemctl start; ``dev up`` from <venv>)
    ready      /health/ready answers 200

When install, check, migrate, start or ready fails, ``<venv>.previous`` is moved back. If the
database is still at the revision it had before, the old version is started again; otherwise
web and workers stay stopped and the report names the backup to restore.

Everything after ``install`` runs the new code in child processes: this process keeps the code
it started with, and imports nothing more from an environment that is being replaced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import httpx
import msgspec

from wingman.config import Settings
from wingman.ops.backup_files import files_path
from wingman.ops.backups import BackupError, Connection, create_backup, server_facts
from wingman.ops.bundles import Bundle, BundleRefused, Installed
from wingman.ops.units import DevUnits, UnitSource

Report = Callable[[str], None]
Outcome = Literal["upgraded", "rolled back", "failed"]

# Exit statuses of `wingmanctl upgrade` (0 upgraded, 1 not confirmed or pending, 64 refused).
EXIT_FAILED = 2  # failed before anything changed, or rolled back: the old version serves
EXIT_ROLLBACK_INCOMPLETE = 3  # failed, and web and workers stay stopped: the operator must act
EXIT_NOPERM = 77  # EX_NOPERM: the appliance is upgraded as root only

# What the new environment must import before it is trusted with the database.
_SMOKE = (
    "import importlib.metadata as m, wingman, wingman.app, wingman.worker, wingman.ctl.main; "
    "print(m.version('wingman')); print(wingman.__file__)"
)


class UpgradeFailed(RuntimeError):
    """A step of the upgrade failed (the message says which and why)."""


class StepResult(msgspec.Struct, kw_only=True):
    step: str
    ok: bool
    result: str
    seconds: float


class UpgradeReport(msgspec.Struct, kw_only=True):
    outcome: Outcome
    exit_code: int
    from_version: str
    to_version: str
    venv: str
    previous: str | None = None
    backup: str | None = None
    migrations_applied: list[str] = msgspec.field(default_factory=list)
    error: str | None = None
    steps: list[StepResult] = msgspec.field(default_factory=list)


# -- child processes in the target environment ---------------------------------------------------


def venv_python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _child_env() -> dict[str, str]:
    # The target environment's own interpreter and packages only.
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _run(command: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=timeout,
        check=False,
    )


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "no output"


def pip_install_command(venv: Path, bundle: Bundle, *, reinstall: bool, dry_run: bool) -> list[str]:
    """pip, offline, with every wheel of the bundle named (so the bundle's pins win)."""
    return [
        venv_python(venv),
        "-I",
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        str(bundle.root / "wheels"),
        *(["--dry-run"] if dry_run else []),
        *(["--force-reinstall"] if reinstall else []),
        *(str(path) for path in bundle.wheel_paths),
    ]


def dry_run(venv: Path, bundle: Bundle, *, reinstall: bool) -> list[str]:
    """What pip would install (``name-version``); BundleRefused when it cannot be installed."""
    if not Path(venv_python(venv)).exists():
        raise BundleRefused(f"{venv} is not a Python environment (no bin/python)")
    result = _run(pip_install_command(venv, bundle, reinstall=reinstall, dry_run=True))
    if result.returncode != 0:
        raise BundleRefused(
            f"pip cannot install the bundle into {venv}: {_tail(result.stderr or result.stdout)}"
        )
    for line in result.stdout.splitlines():
        if line.startswith("Would install "):
            return line.removeprefix("Would install ").split()
    return []


# -- the environment and its copy ----------------------------------------------------------------


def previous_path(venv: Path) -> Path:
    return venv.with_name(f"{venv.name}.previous")


def snapshot(venv: Path) -> Path:
    """Copy ``venv`` to ``<venv>.previous`` (replacing an older copy); returns the copy."""
    previous = previous_path(venv)
    partial = venv.with_name(f"{venv.name}.previous.partial")
    for stale in (partial, previous):
        if stale.exists():
            shutil.rmtree(stale)
    # cp -a keeps symlinks (bin/python), modes and times, and is fast on large trees.
    result = subprocess.run(
        ["cp", "-a", str(venv), str(partial)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise UpgradeFailed(f"cp -a {venv} failed: {_tail(result.stderr)}")
    partial.rename(previous)
    return previous


def put_back(venv: Path, previous: Path) -> None:
    """Move ``previous`` back to ``venv`` (the failed environment is deleted)."""
    failed = venv.with_name(f"{venv.name}.failed")
    if failed.exists():
        shutil.rmtree(failed)
    if venv.exists():
        venv.rename(failed)
    previous.rename(venv)
    shutil.rmtree(failed, ignore_errors=True)


# -- services --------------------------------------------------------------------------------------


def ready_url(settings: Settings) -> str:
    host = settings.server.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}/health/ready"


def wait_ready(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


class Services:
    """Web and workers of a layout: stopped by this process, started from ``venv``."""

    def __init__(self, source: UnitSource, venv: Path) -> None:
        self.source = source
        self.venv = venv

    def stop(self, report: Report) -> None:
        self.source.stop_writers(report)

    def start(self, report: Report) -> None:
        if isinstance(self.source, DevUnits):
            # The dev stack spawns web and workers with the interpreter that runs `dev up`.
            result = _run(
                [
                    venv_python(self.venv),
                    "-I",
                    "-m",
                    "wingman.ctl",
                    "dev",
                    "up",
                    "--data-dir",
                    str(self.source.stack.root),
                ],
                timeout=300,
            )
            for line in result.stderr.splitlines():
                if line.startswith("• "):
                    report(line.removeprefix("• "))
            if result.returncode != 0:
                raise UpgradeFailed(f"the dev stack did not start: {_tail(result.stderr)}")
            return
        self.source.start_writers(report)


# -- the upgrade -----------------------------------------------------------------------------------


def database_revision(url: str) -> str | None:
    """The revision in ``alembic_version`` (raises when the database cannot be reached)."""
    return server_facts(Connection.from_url(url))[2]


class Upgrade:
    """One upgrade of ``installed`` to ``bundle``; :meth:`run` returns the report."""

    # Numbered progress: the caller's verification is step 1.
    STEPS = 9

    def __init__(
        self,
        *,
        installed: Installed,
        bundle: Bundle,
        source: UnitSource,
        settings: Settings,
        revision_before: str | None,
        backup_dir: Path | None,
        backup_keep: int,
        reinstall: bool,
        ready_timeout: float,
        report: Report,
    ) -> None:
        self.venv = installed.venv
        self.installed = installed
        self.bundle = bundle
        self.services = Services(source, installed.venv)
        self.settings = settings
        self.revision_before = revision_before
        self.backup_dir = backup_dir
        self.backup_keep = backup_keep
        self.reinstall = reinstall
        self.ready_timeout = ready_timeout
        self.report = report
        self.previous: Path | None = None
        self.backup_file: Path | None = None
        self.applied: list[str] = []
        self.steps: list[StepResult] = []
        self._number = 1

    # -- bookkeeping -------------------------------------------------------------------------------

    def record(self, step: str, ok: bool, result: str, seconds: float) -> None:
        self.steps.append(StepResult(step=step, ok=ok, result=result, seconds=round(seconds, 1)))

    def _step(self, name: str, description: str, action: Callable[[], str]) -> str:
        self._number += 1
        self.report(f"[{self._number}/{self.STEPS}] {description}")
        started = time.monotonic()
        try:
            detail = action()
        except Exception as exc:
            self.record(name, False, f"failed: {exc}", time.monotonic() - started)
            raise
        self.record(name, True, detail, time.monotonic() - started)
        return detail

    def _result(self, outcome: Outcome, exit_code: int, error: str | None = None) -> UpgradeReport:
        return UpgradeReport(
            outcome=outcome,
            exit_code=exit_code,
            from_version=self.installed.version,
            to_version=self.bundle.version,
            venv=str(self.venv),
            previous=str(self.previous) if self.previous else None,
            backup=str(self.backup_file) if self.backup_file else None,
            migrations_applied=self.applied,
            error=error,
            steps=self.steps,
        )

    # -- steps -------------------------------------------------------------------------------------

    def _snapshot(self) -> str:
        self.previous = snapshot(self.venv)
        return f"copied to {self.previous}"

    def _stop(self) -> str:
        self.services.stop(self.report)
        return "stopped"

    def _backup(self) -> str:
        if self.backup_dir is None:
            return "skipped (--no-backup)"
        manifest = create_backup(
            self.settings.database.effective_direct_url,
            self.backup_dir,
            self.backup_keep,
            report=self.report,
            public=self.settings.public,
        )
        self.backup_file = self.backup_dir / manifest.file
        _give_to_folder_owner(self.backup_file)
        return str(self.backup_file)

    def _install(self) -> str:
        command = pip_install_command(
            self.venv, self.bundle, reinstall=self.reinstall, dry_run=False
        )
        result = _run(command)
        if result.returncode != 0:
            raise UpgradeFailed(f"pip install failed: {_tail(result.stderr or result.stdout)}")
        installed = [
            line.removeprefix("Successfully installed ").strip()
            for line in result.stdout.splitlines()
            if line.startswith("Successfully installed ")
        ]
        return f"installed {installed[0]}" if installed else "nothing to install"

    def _check(self) -> str:
        result = _run([venv_python(self.venv), "-I", "-c", _SMOKE], timeout=120)
        if result.returncode != 0:
            raise UpgradeFailed(f"the new version does not import: {_tail(result.stderr)}")
        lines = result.stdout.split()
        version, module = [*lines, "", ""][:2]
        if version != self.bundle.version:
            raise UpgradeFailed(
                f"the environment reports Wingman {version}, not {self.bundle.version}"
            )
        if not Path(module).resolve().is_relative_to(self.venv.resolve()):
            raise UpgradeFailed(f"wingman is imported from {module}, outside {self.venv}")
        return f"imports Wingman {version}"

    def _migrate(self) -> str:
        result = _run([venv_python(self.venv), "-I", "-m", "wingman.ctl", "migrate", "--json"])
        if result.returncode != 0:
            raise UpgradeFailed(f"migrations failed: {_tail(result.stderr)}")
        self.applied = list(msgspec.json.decode(result.stdout).get("applied", []))
        head = msgspec.json.decode(result.stdout).get("head")
        return (
            f"applied {', '.join(self.applied)}; at head {head}"
            if self.applied
            else f"at head {head}"
        )

    def _start(self) -> str:
        self.services.start(self.report)
        return "started"

    def _ready(self) -> str:
        url = ready_url(self.settings)
        if not wait_ready(url, self.ready_timeout):
            raise UpgradeFailed(f"{url} did not answer 200 within {self.ready_timeout:.0f} s")
        return f"{url}: 200"

    # -- the whole ---------------------------------------------------------------------------------

    def run(self) -> UpgradeReport:
        try:
            self._step("snapshot", f"keeping a copy of {self.venv}", self._snapshot)
        except Exception as exc:  # noqa: BLE001 - reported; nothing was changed
            return self._result(
                "failed",
                EXIT_FAILED,
                f"could not copy the environment ({exc}); nothing was changed",
            )
        try:
            self._step("stop", "stopping web and workers", self._stop)
        except Exception as exc:  # noqa: BLE001 - reported; whatever stopped is started again
            self._start_again()
            return self._result(
                "failed",
                EXIT_FAILED,
                f"could not stop web and workers ({exc}); nothing was changed",
            )
        try:
            self._step("backup", "taking a pre-upgrade backup", self._backup)
        except Exception as exc:  # noqa: BLE001 - reported; the old version is started again
            self._start_again()
            error = exc if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
            return self._result(
                "failed", EXIT_FAILED, f"the backup failed ({error}); nothing was changed"
            )
        try:
            self._step("install", f"installing Wingman {self.bundle.version}", self._install)
            self._step("check", "checking the new environment", self._check)
            self._step("migrate", "migrating the database to the new head", self._migrate)
        except Exception as exc:  # noqa: BLE001 - every failure here leads to the rollback
            return self._roll_back(str(exc))
        try:
            self._step("start", "starting web and workers", self._start)
            self._step("ready", "waiting for /health/ready", self._ready)
        except Exception as exc:  # noqa: BLE001 - the new version does not serve: roll back
            with contextlib.suppress(Exception):
                self.services.stop(self.report)
            return self._roll_back(str(exc))
        self.report(
            f"upgraded Wingman {self.installed.version} → {self.bundle.version}; the previous "
            f"environment stays in {self.previous} until the next upgrade"
        )
        return self._result("upgraded", 0)

    def _start_again(self) -> None:
        try:
            self.services.start(self.report)
        except Exception as exc:  # noqa: BLE001 - the caller's error is the main message
            self.report(f"web and workers did not start again: {exc}")

    def _restore_hint(self) -> str:
        if self.backup_file is not None:
            return (
                f"put the pre-upgrade data back with `wingmanctl restore {self.backup_file} --yes` "
                "(it starts web and workers)"
            )
        return (
            "no pre-upgrade backup was taken (--no-backup): restore the latest backup with "
            "`wingmanctl restore FILE --yes`"
        )

    def _roll_back(self, reason: str) -> UpgradeReport:
        old = self.installed.version
        assert self.previous is not None  # noqa: S101 - snapshot ran before any rollback
        started = time.monotonic()
        self.report(f"rolling back: {reason}")
        try:
            put_back(self.venv, self.previous)
        except OSError as exc:
            self.record("roll back", False, f"failed: {exc}", time.monotonic() - started)
            return self._result(
                "failed",
                EXIT_ROLLBACK_INCOMPLETE,
                f"{reason}; moving {self.previous} back to {self.venv} failed ({exc}): do it by "
                f"hand, then {self._restore_hint()}",
            )
        self.previous = None
        try:
            revision_now = database_revision(self.settings.database.effective_direct_url)
        except Exception as exc:  # noqa: BLE001 - unknown: treat as changed
            revision_now = f"unknown ({exc})"
        if revision_now != self.revision_before:
            self.record(
                "roll back",
                True,
                f"Wingman {old} is back in {self.venv}; web and workers stay stopped",
                time.monotonic() - started,
            )
            return self._result(
                "failed",
                EXIT_ROLLBACK_INCOMPLETE,
                f"{reason}. Wingman {old} is back in {self.venv}, but the database is now at "
                f"schema revision {revision_now} (it was {self.revision_before}), which Wingman "
                f"{old} does not expect, so web and workers stay stopped: "
                f"{self._restore_hint()}",
            )
        try:
            self.services.start(self.report)
            if not wait_ready(ready_url(self.settings), self.ready_timeout):
                raise UpgradeFailed("/health/ready did not answer 200")
        except Exception as exc:  # noqa: BLE001 - reported with the hint
            self.record(
                "roll back",
                False,
                f"Wingman {old} restored but not serving: {exc}",
                time.monotonic() - started,
            )
            return self._result(
                "failed",
                EXIT_ROLLBACK_INCOMPLETE,
                f"{reason}. Wingman {old} is back in {self.venv} and the database is unchanged, "
                f"but it did not start again ({exc}); see `wingmanctl logs`",
            )
        self.record(
            "roll back",
            True,
            f"Wingman {old} restored and serving; database unchanged",
            time.monotonic() - started,
        )
        return self._result(
            "rolled back",
            EXIT_FAILED,
            f"{reason}. Rolled back: Wingman {old} is running again and the database was not "
            "changed",
        )


def _give_to_folder_owner(archive: Path) -> None:
    """As root, hand the archives and manifest to the backup folder's owner.

    The daily backup runs as ``wingman``: its retention and ``backup list`` must be able to read
    the pre-upgrade backup's manifest.
    """
    if os.geteuid() != 0:
        return
    folder = archive.parent.stat()
    if folder.st_uid == 0:
        return
    manifest = archive.with_name(archive.name.removesuffix(".dump") + ".manifest.json")
    files = files_path(archive)
    for path in (archive, manifest, *([files] if files.is_file() else [])):
        os.chown(path, folder.st_uid, folder.st_gid)
