"""Upgrade bundles without services: help text, migration chains, versions, verification."""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from wingman.ctl.main import main
from wingman.ops.bundles import (
    BundleRefused,
    Revision,
    compare_versions,
    installed_in,
    pending_between,
    revision_of_script,
    unpack,
    verify_bundle,
    write_manifest,
)


def quiet(_: str) -> None:
    pass


def test_help_is_complete() -> None:
    result = CliRunner().invoke(main, ["upgrade", "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    for word in (
        "BUNDLE", "--check", "--yes", "--no-backup", "--force", "--venv", "WINGMAN_VENV",
        "--timeout", "--data-dir", "--json", "scripts/build-bundle", "sha256",
        "pip install --no-index", "<venv>.previous", "/health/ready", "wingmanctl restore FILE",
        "Exit status", "64", "77", "root",
    ):  # fmt: skip
        assert word in result.output, f"upgrade --help lacks {word!r}"
    assert "upgrade" in CliRunner().invoke(main, ["--help"]).output


def script(revision: str, down: str) -> str:
    return (
        '"""A revision."""\nimport sqlalchemy as sa\n\n'
        f'revision: str = "{revision}"\ndown_revision: str | None = {down}\n'
        "def upgrade() -> None:\n    pass\n"
    )


def test_revisions_are_read_without_running_the_script() -> None:
    assert revision_of_script(script("0002", '"0001"')) == Revision("0002", ("0001",))
    assert revision_of_script(script("0001", "None")) == Revision("0001", ())
    merge = 'revision = "m"\ndown_revision = ("a", "b")\nraise SystemExit("never run")\n'
    assert revision_of_script(merge) == Revision("m", ("a", "b"))
    assert revision_of_script("x = 1\n") is None
    assert revision_of_script('revision = "r"\ndown_revision = compute()\n') is None


CHAIN = [Revision("0001", ()), Revision("0002", ("0001",)), Revision("0003", ("0002",))]


def test_pending_is_the_chain_from_the_database_to_the_head() -> None:
    assert pending_between(CHAIN, None) == ["0001", "0002", "0003"]
    assert pending_between(CHAIN, "0001") == ["0002", "0003"]
    assert pending_between(CHAIN, "0003") == []
    merged = [*CHAIN, Revision("b1", ("0001",)), Revision("m", ("0003", "b1"))]
    order = pending_between(merged, "0001")
    assert set(order) == {"0002", "0003", "b1", "m"}
    assert order[-1] == "m"
    assert order.index("0002") < order.index("0003")


def test_a_database_newer_than_the_code_or_several_heads_are_refused() -> None:
    with pytest.raises(BundleRefused, match="revision 0009, which this version does not know"):
        pending_between(CHAIN, "0009")
    with pytest.raises(BundleRefused, match="exactly one migration head"):
        pending_between([*CHAIN, Revision("x", ("0001",))], None)


def test_versions_compare_by_meaning_not_by_text() -> None:
    assert compare_versions("1.9.0", "1.10.0") == 1
    assert compare_versions("1.0.0", "1.0.0rc1") == -1
    assert compare_versions("2.0", "2.0.0") == 0
    with pytest.raises(BundleRefused, match="not a valid version"):
        compare_versions("1.0", "latest")


def wheel(folder: Path, version: str, head: str = "0002") -> Path:
    path = folder / f"wingman-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            f"wingman-{version}.dist-info/METADATA",
            f"Metadata-Version: 2.4\nName: wingman\nVersion: {version}\n",
        )
        versions = "wingman/_migrations/versions/"
        archive.writestr(versions + "a.py", script("0001", "None"))
        archive.writestr(versions + "b.py", script(head, '"0001"'))
        archive.writestr("wingman/__init__.py", "x = 1\n" * 500)
    return path


def bundle(tmp_path: Path, version: str = "2.0.0") -> Path:
    root = tmp_path / f"wingman-{version}-bundle"
    (root / "wheels").mkdir(parents=True)
    wheel(root / "wheels", version)
    write_manifest(root, dependencies=False)
    return root


def test_a_whole_bundle_verifies(tmp_path: Path) -> None:
    found = verify_bundle(bundle(tmp_path), quiet)
    assert found.version == "2.0.0"
    assert found.manifest.migration_head == "0002"
    assert [p.name for p in found.wheel_paths] == ["wingman-2.0.0-py3-none-any.whl"]
    assert pending_between(found.revisions, "0001") == ["0002"]


def test_damaged_bundles_are_refused(tmp_path: Path) -> None:
    root = bundle(tmp_path)
    (root / "wheels" / "extra-1.0-py3-none-any.whl").write_bytes(b"PK")
    with pytest.raises(BundleRefused, match=re.escape("wheels not in the manifest: extra-1.0")):
        verify_bundle(root, quiet)

    root = bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["wingman_version"] = "3.0.0"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        BundleRefused, match=re.escape("holds Wingman 2.0.0; the manifest says 3.0.0")
    ):
        verify_bundle(root, quiet)

    manifest["wingman_version"], manifest["unexpected"] = "2.0.0", 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleRefused, match=re.escape("manifest.json is damaged")):
        verify_bundle(root, quiet)

    (root / "manifest.json").unlink()
    with pytest.raises(BundleRefused, match=re.escape("cannot read manifest.json")):
        verify_bundle(root, quiet)


def test_a_wheel_whose_migrations_disagree_with_the_manifest_is_refused(tmp_path: Path) -> None:
    root = bundle(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["migration_head"] = "0003"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleRefused, match="ends at migration 0002; the manifest says 0003"):
        verify_bundle(root, quiet)


def tar_of(path: Path, entries: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w") as tar:
        for entry in entries:
            tar.addfile(entry, io.BytesIO(b"x" * entry.size) if entry.isfile() else None)
    return path


def test_unpack_takes_plain_files_only(tmp_path: Path) -> None:
    root = bundle(tmp_path / "src")
    good = tmp_path / "good.tar"
    with tarfile.open(good, "w") as tar:
        tar.add(root, arcname=root.name)
    unpacked = unpack(good, tmp_path / "out")
    assert unpacked == tmp_path / "out" / root.name
    assert verify_bundle(unpacked, quiet).version == "2.0.0"

    escape = tarfile.TarInfo("../evil.txt")
    escape.size = 1
    with pytest.raises(BundleRefused, match=re.escape("unexpected entry '../evil.txt'")):
        unpack(tar_of(tmp_path / "escape.tar", [escape]), tmp_path / "x")
    assert not (tmp_path / "evil.txt").exists()

    link = tarfile.TarInfo("b/manifest.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(BundleRefused, match="a bundle holds only plain files"):
        unpack(tar_of(tmp_path / "link.tar", [link]), tmp_path / "y")

    with pytest.raises(BundleRefused, match=re.escape("no manifest.json")):
        unpack(tar_of(tmp_path / "empty.tar", []), tmp_path / "z")


def test_an_environment_without_wingman_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleRefused, match="no Wingman is installed in this environment"):
        installed_in(tmp_path)
    info = tmp_path / "lib" / "python3.11" / "site-packages" / "wingman-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.4\nName: wingman\nVersion: 1.0.0\n")
    (info / "direct_url.json").write_text('{"url": "file:///src", "dir_info": {"editable": true}}')
    found = installed_in(tmp_path)
    assert (found.version, found.editable, found.migrations) == ("1.0.0", True, None)
