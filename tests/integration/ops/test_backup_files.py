"""The front proxy's folders in `wingmanctl backup` / `restore`: saved, verified, put back.

``public.state_dir`` and ``public.cert_dir`` point at folders of this test; the database is a
fresh one of the session's cluster, as in test_backup_restore.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import ssl
import tarfile
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from tests.integration.ops.test_backup_restore import Env, conninfo, ctl
from tests.support.proxy import needs_caddy, running_proxy, with_public
from tests.support.services import child_env
from wingman.config import DatabaseSettings, PublicSettings, Settings
from wingman.db.migrations import upgrade_to_head
from wingman.ops.backup_files import RestoredFolder, restore_files
from wingman.ops.backups import BackupRefused, create_backup, list_backups, verify_backup
from wingman.ops.proxy import internal_root

Tree = dict[str, tuple[int, bytes | str | None]]


class Folders(msgspec.Struct):
    env: Env
    proxy: Path
    tls: Path
    public: PublicSettings


def _env(settings: Settings, url: str, tmp_path: Path) -> Folders:
    upgrade_to_head(url)
    proxy, tls = tmp_path / "lib" / "proxy", tmp_path / "lib" / "tls"
    public = msgspec.structs.replace(PublicSettings(), state_dir=str(proxy), cert_dir=str(tls))
    fresh = msgspec.structs.replace(settings, database=DatabaseSettings(url=url), public=public)
    env = Env(url, child_env(fresh, tmp_path / "config"), tmp_path / "backups")
    return Folders(env, proxy, tls, public)


@pytest.fixture
def folders(settings: Settings, empty_database_url: str, tmp_path: Path) -> Folders:
    return _env(settings, empty_database_url, tmp_path)


def fill(folders: Folders) -> None:
    """What Caddy and `tls import` leave: private keys 0600, certificates 0644, 0700 folders."""
    local = folders.proxy / "pki" / "authorities" / "local"
    local.mkdir(parents=True)
    for path, mode, data in (
        (local / "root.key", 0o600, b"-----BEGIN EC PRIVATE KEY-----\nroot\n"),
        (local / "root.crt", 0o644, b"-----BEGIN CERTIFICATE-----\nroot\n"),
        (folders.proxy / "acme" / "account.json", 0o600, b'{"key": "acct"}'),
        (folders.tls / "cert.pem", 0o644, b"-----BEGIN CERTIFICATE-----\nimported\n"),
        (folders.tls / "key.pem", 0o640, b"-----BEGIN PRIVATE KEY-----\nimported\n"),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    (local / "current.crt").symlink_to("root.crt")  # a link inside the folder is kept
    for folder in (folders.proxy, folders.proxy / "pki", local):
        folder.chmod(0o700)
    folders.tls.chmod(0o750)


def tree(folder: Path) -> Tree:
    """Every entry under ``folder``: mode and content (or link target)."""
    found: Tree = {".": (folder.stat().st_mode & 0o7777, None)}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            value: bytes | str | None = os.readlink(path)
        else:
            value = path.read_bytes() if path.is_file() else None
        found[str(path.relative_to(folder))] = (info.st_mode & 0o7777, value)
    return found


def mark(url: str) -> None:
    with psycopg.connect(conninfo(url)) as conn:
        conn.execute("INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'mark@example.org')")


def marked(url: str) -> bool:
    with psycopg.connect(conninfo(url)) as conn:
        row = conn.execute("SELECT count(*) FROM users WHERE email = 'mark@example.org'").fetchone()
    return row == (1,)


def backup(env: Env, *args: str) -> dict[str, object]:
    result = ctl(env, "backup", "--to", str(env.backups), "--json", *args)
    assert result.returncode == 0, result.stderr
    assert "saving " in result.stderr or "none saved" in result.stderr
    manifest: dict[str, object] = json.loads(result.stdout)
    return manifest


def quiet(_: str) -> None:
    """Progress lines of in-process calls: not needed (each child process costs seconds)."""


def test_backup_saves_the_folders_and_restore_puts_them_back(folders: Folders) -> None:
    fill(folders)
    before = {"proxy": tree(folders.proxy), "tls": tree(folders.tls)}
    manifest = backup(folders.env)
    assert manifest["format"] == 2
    files = manifest["files"]
    assert isinstance(files, dict)
    archive = Path(str(manifest["files_path"]))
    assert archive.name == files["file"] == Path(str(manifest["path"])).stem + ".files.tar"
    assert archive.stat().st_mode & 0o777 == 0o600  # holds private keys: owner-only
    assert files["size"] == archive.stat().st_size
    assert files["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert [(f["name"], f["path"], f["setting"]) for f in files["folders"]] == [
        ("proxy", str(folders.proxy), "public.state_dir"),
        ("tls", str(folders.tls), "public.cert_dir"),
    ]
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert not [n for n in names if n.startswith("/") or ".." in n.split("/")]
    assert {n.split("/")[0] for n in names} == {"proxy", "tls"}
    assert len(names) == sum(f["entries"] for f in files["folders"])

    # The host changes: a key lost, a certificate replaced, a stray file; the database too.
    (folders.proxy / "pki" / "authorities" / "local" / "root.key").unlink()
    (folders.tls / "cert.pem").write_bytes(b"another certificate")
    (folders.tls / "stray.pem").write_bytes(b"stray")
    mark(folders.env.url)
    changed = {"proxy": tree(folders.proxy), "tls": tree(folders.tls)}

    # Without --with-files the database comes back and this host keeps its folders.
    plain = ctl(folders.env, "restore", str(manifest["path"]), "--yes", "--json")
    assert plain.returncode == 0, plain.stderr
    assert "left as they are (--with-files restores them)" in plain.stderr
    assert json.loads(plain.stdout)["files"] == {
        "archive": files["file"],
        "restored": [],
        "left_alone": True,
    }
    assert not marked(folders.env.url)
    assert {"proxy": tree(folders.proxy), "tls": tree(folders.tls)} == changed

    mark(folders.env.url)
    full = ctl(folders.env, "restore", str(manifest["path"]), "--yes", "--with-files", "--json")
    assert full.returncode == 0, full.stderr
    report = json.loads(full.stdout)
    assert [(f["name"], f["path"]) for f in report["files"]["restored"]] == [
        ("proxy", str(folders.proxy)),
        ("tls", str(folders.tls)),
    ]
    assert "restart the front proxy" in report["proxy"]
    assert not marked(folders.env.url)
    assert {"proxy": tree(folders.proxy), "tls": tree(folders.tls)} == before
    # Nothing left beside the folders: staging and old copies are gone.
    assert sorted(p.name for p in folders.proxy.parent.iterdir()) == ["proxy", "tls"]

    # Retention and the list treat the three files as one backup.
    backups = folders.env.backups
    newer = create_backup(folders.env.url, backups, 1, quiet, public=folders.public)
    assert newer.files is not None
    stem = newer.file.removesuffix(".dump")
    assert sorted(p.name for p in backups.iterdir()) == sorted(
        [newer.file, newer.files.file, f"{stem}.manifest.json"]
    )
    [entry] = list_backups(backups)
    assert entry.ok
    assert entry.files_size == (backups / newer.files.file).stat().st_size
    (backups / newer.files.file).write_bytes(b"short")
    [damaged] = list_backups(backups)
    assert not damaged.ok
    assert "differs from the manifest" in str(damaged.problem)


def _hostile(archive: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    """Add ``member`` to the files archive and make the manifest agree with the result, so only
    the member check stands between it and the disk."""
    with tarfile.open(archive, "a") as tar:
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    manifest_file = archive.with_name(archive.name.replace(".files.tar", ".manifest.json"))
    manifest = json.loads(manifest_file.read_text())
    body = archive.read_bytes()
    manifest["files"]["size"] = len(body)
    manifest["files"]["sha256"] = hashlib.sha256(body).hexdigest()
    manifest_file.write_text(json.dumps(manifest))


def _member(name: str, *, link: str | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    else:
        info.size = 0
    return info


def test_damaged_or_hostile_files_archive_is_refused_before_anything_changes(
    folders: Folders, tmp_path: Path
) -> None:
    fill(folders)
    made = create_backup(folders.env.url, folders.env.backups, 7, quiet, public=folders.public)
    assert made.files is not None
    dump = folders.env.backups / made.file
    archive = folders.env.backups / made.files.file
    manifest_file = dump.with_name(dump.stem + ".manifest.json")
    good_archive, good_manifest = archive.read_bytes(), manifest_file.read_text()
    mark(folders.env.url)
    before = {"proxy": tree(folders.proxy), "tls": tree(folders.tls)}
    outside = tmp_path / "outside"

    # Through the command line once: a flipped byte, refused even without --with-files, exit 64
    # before web and workers stop, the database and the folders as they were.
    data = bytearray(good_archive)
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    result = ctl(folders.env, "restore", str(dump), "--yes")
    assert result.returncode == 64, result.stderr
    assert f"refused: {archive.name} is corrupt: its sha256 differs" in result.stderr
    assert "Traceback" not in result.stderr
    assert "stopping web" not in result.stderr
    assert marked(folders.env.url)
    assert {"proxy": tree(folders.proxy), "tls": tree(folders.tls)} == before

    # The other refusals come from the same verification, called in-process (each child
    # process costs seconds); the command turns BackupRefused into exit 64 as above.
    cases = [
        (lambda: archive.write_bytes(good_archive[:1024]), "is truncated or altered"),
        (archive.unlink, "missing (the manifest lists it)"),
        (lambda: _hostile(archive, _member("proxy/../../escape")), "a name with '..'"),
        (lambda: _hostile(archive, _member(f"{outside}/abs")), "an absolute or odd name"),
        (lambda: _hostile(archive, _member("other/file")), "outside the saved folders"),
        (
            lambda: _hostile(archive, _member("proxy/evil", link=str(outside))),
            "a link to an absolute path",
        ),
        (
            lambda: _hostile(archive, _member("tls/evil", link="../../outside")),
            "a link leaving its folder",
        ),
    ]
    for damage, expected in cases:
        archive.write_bytes(good_archive)
        manifest_file.write_text(good_manifest)
        damage()
        with pytest.raises(BackupRefused) as refused:
            verify_backup(dump, quiet, need_files=True)
        assert expected in str(refused.value)
    assert marked(folders.env.url)
    assert {"proxy": tree(folders.proxy), "tls": tree(folders.tls)} == before
    assert not outside.exists()
    assert sorted(p.name for p in folders.proxy.parent.iterdir()) == ["proxy", "tls"]


def test_without_folders_no_files_archive_and_format_1_still_restores(folders: Folders) -> None:
    # The development stack: neither folder exists.
    made = create_backup(folders.env.url, folders.env.backups, 7, quiet, public=folders.public)
    assert made.files is None
    assert made.files_skipped == []
    assert sorted(p.suffix for p in folders.env.backups.iterdir()) == [".dump", ".json"]
    assert (
        json.loads((folders.env.backups / made.file).with_suffix(".manifest.json").read_text())[
            "files"
        ]
        is None
    )

    # A manifest written before the files part existed.
    dump = folders.env.backups / made.file
    manifest_file = dump.with_name(dump.stem + ".manifest.json")
    old = json.loads(manifest_file.read_text())
    del old["files"], old["files_skipped"]
    old["format"] = 1
    manifest_file.write_text(json.dumps(old))
    mark(folders.env.url)
    result = ctl(folders.env, "restore", str(dump), "--yes", "--with-files")
    assert result.returncode == 0, result.stderr
    assert "holds no proxy folders: only the database is restored" in result.stderr
    assert not marked(folders.env.url)
    assert not folders.proxy.exists()
    assert not folders.tls.exists()

    # A manifest format from the future is refused, saying so.
    old["format"] = 3
    manifest_file.write_text(json.dumps(old))
    with pytest.raises(BackupRefused, match="manifest format 3 is newer"):
        verify_backup(dump, quiet)


@needs_caddy
def test_a_real_proxy_serves_under_the_old_root_after_the_restore(
    folders: Folders, tmp_path: Path
) -> None:
    """Caddy's own storage, saved and put back: it keeps its CA instead of making a new one."""
    front = with_public(Settings(), tmp_path / "front")
    root = internal_root(front.public)
    with running_proxy(front, tmp_path / "front") as running:
        assert root.is_file(), running.log_text()[-2000:]
    trusted = tmp_path / "trusted-root.crt"  # what clients were given
    shutil.copy(root, trusted)
    made = create_backup(folders.env.url, folders.env.backups, 7, quiet, public=front.public)
    assert made.files is not None
    assert [f.name for f in made.files.folders] == ["proxy"]

    shutil.rmtree(front.public.state_dir)  # the new host: no storage
    restored: list[RestoredFolder] = []
    restore_files(folders.env.backups / made.files.file, made.files, front.public, quiet, restored)
    assert [f.name for f in restored] == ["proxy"]
    with running_proxy(front, tmp_path / "front") as running:
        assert root.read_bytes() == trusted.read_bytes(), running.log_text()[-2000:]
        # The served certificate chains to the root the clients already trust.
        with httpx.Client(verify=ssl.create_default_context(cafile=trusted)) as client:
            answer = client.get(f"{running.https_url}/health/ready")
        assert answer.status_code in (200, 502)  # no app behind it here; TLS is what counts
