"""Upgrade bundles: the wheels of one Wingman release, checksummed, for an offline install.

A bundle is a tar file (or the folder it unpacks to) made by ``scripts/build-bundle``::

    wingman-0.2.0-bundle/
      manifest.json                       BundleManifest: version, migration head, wheels
      wheels/wingman-0.2.0-py3-none-any.whl
      wheels/<every runtime dependency>.whl   (absent in a --no-deps bundle)

Nothing is installed before the bundle is proven whole: every wheel is listed in the manifest
with its size and sha256, every wheel is a readable zip, and exactly one is Wingman's, of the
manifest's version. The migrations the bundle would apply are read from that wheel's files
without running any of its code.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import msgspec
from packaging.version import InvalidVersion, Version

from wingman.ops.checksums import sha256_of

Report = Callable[[str], None]
BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
WHEELS = "wheels"
MIGRATIONS_IN_WHEEL = "wingman/_migrations/versions/"
_WINGMAN_WHEEL = re.compile(r"^wingman-(?P<version>[^-]+)-py3-none-any\.whl$")


class BundleRefused(RuntimeError):
    """A bundle is missing, corrupt, incomplete or does not fit this installation."""


class BundleWheel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    file: str
    size: int
    sha256: str


class BundleManifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: int
    wingman_version: str
    # The schema revision the bundle's code expects (informational; checked against the wheel).
    migration_head: str
    # False for a --no-deps bundle: the target must already have every dependency.
    dependencies: bool
    created_at: datetime
    wheels: list[BundleWheel]


class Revision(msgspec.Struct, frozen=True):
    """One Alembic revision as its script declares it."""

    id: str
    down: tuple[str, ...]


class Bundle(msgspec.Struct, kw_only=True):
    """A verified bundle, unpacked in ``root``."""

    root: Path
    manifest: BundleManifest
    wingman_wheel: Path
    revisions: list[Revision]

    @property
    def version(self) -> str:
        return self.manifest.wingman_version

    @property
    def wheel_paths(self) -> list[Path]:
        return [self.root / WHEELS / wheel.file for wheel in self.manifest.wheels]


# -- hashing and versions ----------------------------------------------------------------------


def parse_version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise BundleRefused(f"{text!r} is not a valid version") from None


def compare_versions(installed: str, offered: str) -> int:
    """-1, 0 or 1 as ``offered`` is older than, equal to or newer than ``installed``."""
    a, b = parse_version(installed), parse_version(offered)
    return (b > a) - (b < a)


# -- migrations ----------------------------------------------------------------------------------


_UNREADABLE = object()


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _UNREADABLE


def revision_of_script(source: str) -> Revision | None:
    """``revision`` and ``down_revision`` of an Alembic script, read without running it."""
    found: dict[str, object] = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            if statement.value is not None:
                found[statement.target.id] = _literal(statement.value)
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = _literal(statement.value)
    revision, down = found.get("revision"), found.get("down_revision", _UNREADABLE)
    if not isinstance(revision, str):
        return None
    if down is None:
        downs: tuple[str, ...] = ()
    elif isinstance(down, str):
        downs = (down,)
    elif isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
        downs = tuple(str(d) for d in down)
    else:
        return None
    return Revision(revision, downs)


def revisions_from_sources(sources: Iterable[str]) -> list[Revision]:
    return [r for r in (revision_of_script(s) for s in sources) if r is not None]


def revisions_in_wheel(wheel: Path) -> list[Revision]:
    """The Alembic revisions shipped in a Wingman wheel (``wingman/_migrations/versions``)."""
    with zipfile.ZipFile(wheel) as archive:
        sources = [
            archive.read(name).decode()
            for name in archive.namelist()
            if name.startswith(MIGRATIONS_IN_WHEEL)
            and name.endswith(".py")
            and "/" not in name[len(MIGRATIONS_IN_WHEEL) :]
        ]
    return revisions_from_sources(sources)


def revisions_in_folder(versions: Path) -> list[Revision]:
    return revisions_from_sources(p.read_text() for p in sorted(versions.glob("*.py")))


def head_of(revisions: list[Revision]) -> str:
    """The single head (a revision nobody revises); refused when there are none or several."""
    downs = {d for r in revisions for d in r.down}
    heads = sorted(r.id for r in revisions if r.id not in downs)
    if len(heads) != 1:
        raise BundleRefused(f"expected exactly one migration head, found {heads or 'none'}")
    return heads[0]


def _ancestors(revisions: dict[str, Revision], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        current = todo.pop()
        if current in seen or current not in revisions:
            continue
        seen.add(current)
        todo.extend(revisions[current].down)
    return seen


def pending_between(revisions: list[Revision], current: str | None) -> list[str]:
    """Revisions from ``current`` (exclusive) to the head, oldest first.

    Raises :class:`BundleRefused` when ``current`` is not among ``revisions``: the database was
    migrated by a newer Wingman than this code.
    """
    by_id = {r.id: r for r in revisions}
    head = head_of(revisions)
    if current is not None and current not in by_id:
        raise BundleRefused(
            f"the database is at schema revision {current}, which this version does not know "
            "(it was migrated by a newer Wingman)"
        )
    wanted = _ancestors(by_id, head) - (_ancestors(by_id, current) if current else set())
    ordered: list[str] = []
    placed: set[str] = set()
    # Oldest first: a revision comes after every revision it revises.
    while len(ordered) < len(wanted):
        ready = sorted(
            r for r in wanted - placed if all(d in placed or d not in wanted for d in by_id[r].down)
        )
        ordered.extend(ready)
        placed.update(ready)
    return ordered


# -- reading and verifying -----------------------------------------------------------------------


def _safe_member_name(name: str) -> PurePosixPath | None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    return path


def unpack(archive: Path, into: Path) -> Path:
    """Unpack a bundle tar into ``into`` and return the folder holding ``manifest.json``.

    Only plain files and folders with relative names are taken; anything else is refused.
    """
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = _safe_member_name(member.name)
                if name is None or not (member.isfile() or member.isdir()):
                    raise BundleRefused(
                        f"{archive.name}: unexpected entry {member.name!r} (a bundle holds "
                        "only plain files)"
                    )
                target = into.joinpath(*name.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise BundleRefused(f"{archive.name}: cannot read {member.name!r}")
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, EOFError) as exc:
        raise BundleRefused(f"{archive.name} is not a readable bundle (tar: {exc})") from None
    return bundle_root(into, archive.name)


def bundle_root(folder: Path, label: str) -> Path:
    """``folder`` itself or its single subfolder, whichever holds ``manifest.json``."""
    if (folder / MANIFEST).is_file():
        return folder
    candidates = [p for p in folder.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
    if len(candidates) != 1:
        raise BundleRefused(
            f"{label}: no {MANIFEST}; only bundles made by scripts/build-bundle can be installed"
        )
    return candidates[0]


def read_manifest(root: Path) -> BundleManifest:
    try:
        manifest = msgspec.json.decode((root / MANIFEST).read_bytes(), type=BundleManifest)
    except OSError as exc:
        raise BundleRefused(f"cannot read {MANIFEST} ({exc.strerror})") from None
    except msgspec.DecodeError as exc:
        raise BundleRefused(f"{MANIFEST} is damaged ({exc})") from None
    if manifest.format != BUNDLE_FORMAT:
        raise BundleRefused(
            f"{MANIFEST} has format {manifest.format}; this Wingman reads format {BUNDLE_FORMAT}"
        )
    return manifest


def wheel_version(wheel: Path) -> str:
    """The ``Version`` in a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise BundleRefused(f"{wheel.name} has no single METADATA file")
        for line in archive.read(names[0]).decode().splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    raise BundleRefused(f"{wheel.name}: METADATA names no version")


def _check_zip(wheel: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError) as exc:
        # zlib.error: a member's compressed data is damaged beyond decompressing.
        raise BundleRefused(f"{wheel.name} is not a readable wheel ({exc})") from None
    if bad is not None:
        raise BundleRefused(f"{wheel.name} is corrupt: {bad} fails its CRC check")


def verify_bundle(root: Path, report: Report) -> Bundle:
    """Prove the unpacked bundle in ``root`` whole and consistent, or raise BundleRefused."""
    manifest = read_manifest(root)
    report(
        f"verifying {len(manifest.wheels)} wheel(s) of Wingman {manifest.wingman_version} "
        "against the manifest (size, sha256, zip CRCs)"
    )
    folder = root / WHEELS
    listed = {wheel.file for wheel in manifest.wheels}
    present = {p.name for p in folder.glob("*.whl")} if folder.is_dir() else set()
    if extra := sorted(present - listed):
        raise BundleRefused(f"wheels not in the manifest: {', '.join(extra)}")
    for entry in manifest.wheels:
        path = folder / entry.file
        if PurePosixPath(entry.file).name != entry.file or not path.is_file():
            raise BundleRefused(f"{entry.file} is listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.size:
            raise BundleRefused(
                f"{entry.file} is truncated or altered: {size} bytes, the manifest says "
                f"{entry.size}"
            )
        if sha256_of(path) != entry.sha256:
            raise BundleRefused(f"{entry.file} is corrupt: its sha256 differs from the manifest's")
        _check_zip(path)
    ours = [w.file for w in manifest.wheels if _WINGMAN_WHEEL.match(w.file)]
    if len(ours) != 1:
        raise BundleRefused(f"expected exactly one wingman wheel, found {len(ours)}")
    wheel = folder / ours[0]
    version = wheel_version(wheel)
    if version != manifest.wingman_version:
        raise BundleRefused(
            f"{wheel.name} holds Wingman {version}; the manifest says {manifest.wingman_version}"
        )
    parse_version(version)
    revisions = revisions_in_wheel(wheel)
    head = head_of(revisions)
    if head != manifest.migration_head:
        raise BundleRefused(
            f"{wheel.name} ends at migration {head}; the manifest says {manifest.migration_head}"
        )
    return Bundle(root=root, manifest=manifest, wingman_wheel=wheel, revisions=revisions)


# -- writing (scripts/build-bundle) ----------------------------------------------------------------


def write_manifest(root: Path, dependencies: bool) -> BundleManifest:
    """Write ``root/manifest.json`` for the wheels in ``root/wheels``; returns the manifest."""
    wheels = sorted((root / WHEELS).glob("*.whl"))
    ours = [w for w in wheels if _WINGMAN_WHEEL.match(w.name)]
    if len(ours) != 1:
        raise BundleRefused(f"expected exactly one wingman wheel in {root / WHEELS}")
    manifest = BundleManifest(
        format=BUNDLE_FORMAT,
        wingman_version=wheel_version(ours[0]),
        migration_head=head_of(revisions_in_wheel(ours[0])),
        dependencies=dependencies,
        created_at=datetime.now(UTC),
        wheels=[
            BundleWheel(file=w.name, size=w.stat().st_size, sha256=sha256_of(w)) for w in wheels
        ],
    )
    data = json.loads(msgspec.json.encode(manifest))
    (root / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")
    return manifest


# -- an installed environment ----------------------------------------------------------------------


class Installed(msgspec.Struct, kw_only=True):
    """Wingman as installed in a Python environment (read from its files, nothing imported)."""

    venv: Path
    version: str
    editable: bool
    # The migration scripts shipped with it; None for an editable install (they are in the tree).
    migrations: Path | None


def installed_in(venv: Path) -> Installed:
    """The Wingman installed in ``venv``; BundleRefused when there is none."""
    found = sorted(venv.glob("lib/python3*/site-packages/wingman-*.dist-info"))
    if not found:
        raise BundleRefused(f"{venv}: no Wingman is installed in this environment")
    info = found[-1]
    version = ""
    for line in (info / "METADATA").read_text().splitlines():
        if line.startswith("Version:"):
            version = line.split(":", 1)[1].strip()
            break
    editable = False
    direct_url = info / "direct_url.json"
    if direct_url.is_file():
        try:
            editable = bool(json.loads(direct_url.read_text()).get("dir_info", {}).get("editable"))
        except ValueError:
            editable = False
    migrations = info.parent / "wingman" / "_migrations" / "versions"
    return Installed(
        venv=venv,
        version=version,
        editable=editable,
        migrations=migrations if migrations.is_dir() else None,
    )
