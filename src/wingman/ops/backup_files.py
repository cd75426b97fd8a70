"""The front proxy's folders in a backup: a tar beside the database dump, and their restore.

The proxy's storage (``public.state_dir``: the internal CA and its private keys, the ACME
account, issued certificates) and an imported certificate and key (``public.cert_dir``) live
outside the database; without them a new host must be trusted anew by every client. A backup
saves both folders, when they exist, in ``wingman-<time>.files.tar`` (owner-only). Each folder is
stored under a member root named after it (``proxy/…``, ``tls/…``), never an absolute path, with
the modes and owner names of its files.

A restore proves the tar whole (size, sha256) and every member harmless (no absolute name, no
``..``, no link leaving its folder, no device or pipe) before anything is touched, then replaces
each folder by extracting beside it and swapping by rename; the old copy is removed last. The
folders restored are the ones this host's settings name, wherever the backup's host kept them.
"""

from __future__ import annotations

import grp
import os
import posixpath
import pwd
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec

from wingman.config import PublicSettings
from wingman.ops.checksums import sha256_of

Report = Callable[[str], None]
# Member root in the tar -> the [public] setting that names the folder on a host.
FOLDERS: dict[str, str] = {"proxy": "state_dir", "tls": "cert_dir"}
# tarfile's "data" filter (PEP 706) is in 3.11.4+ and 3.12+; older 3.11 releases rely on
# check_members alone, which refuses everything that filter would.
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


class FilesRefused(RuntimeError):
    """The files archive is missing, corrupt, truncated or holds an unsafe member."""


class SavedFolder(msgspec.Struct, kw_only=True):
    """One folder in the files archive: its member root and where it was on the backup's host."""

    name: str
    setting: str
    path: str
    entries: int


class FilesArchive(msgspec.Struct, kw_only=True):
    file: str
    size: int
    sha256: str
    folders: list[SavedFolder]


class RestoredFolder(msgspec.Struct, kw_only=True):
    name: str
    path: str
    entries: int


def folder_paths(public: PublicSettings) -> dict[str, Path]:
    """Member root -> this host's folder for it."""
    return {name: Path(getattr(public, setting)) for name, setting in FOLDERS.items()}


def files_path(dump: Path) -> Path:
    return dump.with_name(dump.name.removesuffix(".dump") + ".files.tar")


# -- backup ------------------------------------------------------------------------------------


def _unreadable(folder: Path) -> str | None:
    """Why ``folder`` cannot be saved whole by this user, or None.

    Tried by opening, not with ``os.access``: that ignores capabilities, and the appliance's
    backup unit reads the proxy's folder through ``CAP_DAC_READ_SEARCH``."""
    problems: list[str] = []
    for root, _, files in os.walk(folder, onerror=lambda exc: problems.append(str(exc))):
        for name in files:
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue  # links are saved as links; pipes are left out (and would block)
            try:
                path.open("rb").close()
            except OSError as exc:
                problems.append(str(exc))
    return problems[0] if problems else None


def _keep_member(root: str, report: Report) -> Callable[[tarfile.TarInfo], tarfile.TarInfo | None]:
    """Leave out what a restore would refuse: devices, pipes, sockets, links out of the folder."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        problem = _member_problem(info, {root})
        if problem is not None:
            report(f"left out {info.name}: {problem}")
            return None
        return info

    return keep


def write_files_archive(
    target: Path, public: PublicSettings, report: Report
) -> tuple[FilesArchive | None, list[str]]:
    """Save the existing proxy folders in ``target``; returns what was saved and what was not
    (an unreadable folder is skipped, saying why, so the database backup still happens)."""
    present = {name: path for name, path in folder_paths(public).items() if path.is_dir()}
    skipped = []
    for name, path in list(present.items()):
        why = _unreadable(path)
        if why is not None:
            skipped.append(f"{path}: not saved ({why})")
            report(f"warning: {path} is not saved: {why}")
            del present[name]
    if not present:
        if not skipped:
            report("no proxy folders here (public.state_dir, public.cert_dir): none saved")
        return None, skipped
    report(f"saving {', '.join(str(p) for p in present.values())} to {target.name}")
    partial = target.with_name(target.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    saved = []
    try:
        with os.fdopen(fd, "wb") as fh:
            with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, path in present.items():
                    before = len(tar.getmembers())
                    tar.add(path, arcname=name, recursive=True, filter=_keep_member(name, report))
                    saved.append(
                        SavedFolder(
                            name=name,
                            setting=f"public.{FOLDERS[name]}",
                            path=str(path),
                            entries=len(tar.getmembers()) - before,
                        )
                    )
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(target)
    return (
        FilesArchive(
            file=target.name, size=target.stat().st_size, sha256=sha256_of(target), folders=saved
        ),
        skipped,
    )


# -- verify ------------------------------------------------------------------------------------


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _name_problem(name: str, roots: set[str]) -> str | None:
    if not name or name.startswith("/") or "\\" in name:
        return "an absolute or odd name"
    parts = name.split("/")
    if ".." in parts:
        return "a name with '..'"
    if parts[0] not in roots:
        return f"outside the saved folders ({', '.join(sorted(roots))})"
    return None


def _member_problem(info: tarfile.TarInfo, roots: set[str]) -> str | None:
    """Why extracting ``info`` could write outside its folder (or make a special file)."""
    name = info.name
    problem = _name_problem(name, roots)
    if problem is not None:
        return problem
    root = name.split("/")[0]
    if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
        return "a device, pipe or other special file"
    if info.issym() or info.islnk():
        link = info.linkname
        if not link or link.startswith("/"):
            return f"a link to an absolute path ({link})"
        # A symbolic link is relative to its own folder; a hard link names another member.
        where = posixpath.dirname(name) if info.issym() else ""
        resolved = posixpath.normpath(posixpath.join(where, link))
        if not _inside(resolved, root):
            return f"a link leaving its folder ({link})"
    return None


def check_members(tar: tarfile.TarFile, roots: set[str]) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for info in members:
        problem = _member_problem(info, roots)
        if problem is not None:
            raise FilesRefused(f"member {info.name!r} is unsafe: {problem}")
    return members


def verify_files(archive: Path, part: FilesArchive, report: Report) -> None:
    """Prove the files archive whole and harmless, or raise :class:`FilesRefused`."""
    if not archive.is_file():
        raise FilesRefused(f"{archive.name}: missing (the manifest lists it)")
    size = archive.stat().st_size
    if size != part.size:
        raise FilesRefused(
            f"{archive.name} is truncated or altered: {size} bytes, the manifest says {part.size}"
        )
    report(f"verifying the checksum of {archive.name}")
    if sha256_of(archive) != part.sha256:
        raise FilesRefused(f"{archive.name} is corrupt: its sha256 differs from the manifest's")
    roots = {folder.name for folder in part.folders}
    unknown = roots - FOLDERS.keys()
    if unknown:
        raise FilesRefused(f"{archive.name} holds folders this version does not know: {unknown}")
    try:
        with tarfile.open(archive, mode="r:") as tar:
            check_members(tar, roots)
    except tarfile.TarError as exc:
        raise FilesRefused(f"{archive.name} is not a readable tar: {exc}") from None


# -- restore -----------------------------------------------------------------------------------


def _owner(info: tarfile.TarInfo, fallback: tuple[int, int]) -> tuple[int, int]:
    """The member's owner and group by name on this host (ids differ between hosts)."""
    try:
        uid = pwd.getpwnam(info.uname).pw_uid if info.uname else fallback[0]
    except KeyError:
        uid = fallback[0]
    try:
        gid = grp.getgrnam(info.gname).gr_gid if info.gname else fallback[1]
    except KeyError:
        gid = fallback[1]
    return uid, gid


def _extract(
    tar: tarfile.TarFile, members: list[tarfile.TarInfo], into: Path, owner: tuple[int, int]
) -> None:
    if HAS_DATA_FILTER:
        tar.extractall(into, members=members, filter="data")
    else:  # pragma: no cover - Python 3.11.0-3.11.3; check_members already refused the unsafe
        tar.extractall(into, members=members)  # noqa: S202 - members checked by check_members
    # The data filter leaves directory modes and owners unset: put back the saved ones (never
    # set-id or sticky bits). Deepest first, so a read-only folder is set after its contents.
    as_root = os.geteuid() == 0
    for info in sorted(members, key=lambda m: m.name.count("/"), reverse=True):
        path = into / info.name
        if as_root:
            os.lchown(path, *_owner(info, owner))
        if not info.issym():
            path.chmod(info.mode & 0o777)


def restore_files(
    archive: Path,
    part: FilesArchive,
    public: PublicSettings,
    report: Report,
    restored: list[RestoredFolder],
) -> None:
    """Replace each saved folder on this host: extract beside it, swap by rename, drop the old.

    Each folder put back is appended to ``restored`` as it is swapped in, so a caller whose
    restore failed half-way still knows which folders changed. The caller has run
    :func:`verify_files`; members are checked again as they are read.
    """
    targets = folder_paths(public)
    with tarfile.open(archive, mode="r:") as tar:
        members = check_members(tar, {folder.name for folder in part.folders})
        for folder in part.folders:
            target = targets[folder.name]
            own = [m for m in members if _inside(m.name, folder.name)]
            target.parent.mkdir(parents=True, exist_ok=True)
            existing = target.stat() if target.exists() else target.parent.stat()
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
            try:
                _extract(tar, own, staging, (existing.st_uid, existing.st_gid))
                _swap(staging / folder.name, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            report(f"{target}: restored ({len(own)} entries from {folder.path})")
            restored.append(RestoredFolder(name=folder.name, path=str(target), entries=len(own)))
    for name, target in targets.items():
        if name not in {folder.name for folder in part.folders} and target.exists():
            report(f"{target}: not in the backup, left as it is")


def _swap(new: Path, target: Path) -> None:
    """Put ``new`` where ``target`` is by rename; the old copy is removed once the new is in."""
    if not target.exists() and not target.is_symlink():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()
