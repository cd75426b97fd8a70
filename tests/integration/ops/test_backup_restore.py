"""`wingmanctl backup` / `restore` on a real database: round trip, refusals, retention.

Each test works on a fresh database of the session's cluster, migrated to head, and drives the
command line as a child process with settings pointing at it (the settings-only layout).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import psycopg
import pytest

from tests.support.services import child_env
from wingman.config import DatabaseSettings, Settings
from wingman.db.migrations import head_revision, upgrade_to_head

# The rows compared byte for byte before and after a round trip.
SNAPSHOT_QUERIES = (
    "SELECT id, email, display_name, tier, role, status, created_at FROM users ORDER BY id",
    "SELECT id, slug, name, prompt, sort_order, is_active FROM tones ORDER BY id",
    "SELECT key, value FROM global_config ORDER BY key",
)


class Env(msgspec.Struct):
    url: str
    environ: dict[str, str]
    backups: Path


@pytest.fixture
def env(settings: Settings, empty_database_url: str, tmp_path: Path) -> Env:
    upgrade_to_head(empty_database_url)
    fresh = msgspec.structs.replace(settings, database=DatabaseSettings(url=empty_database_url))
    return Env(empty_database_url, child_env(fresh, tmp_path / "config"), tmp_path / "backups")


def ctl(env: Env, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``wingmanctl <args>`` against this test's database, optionally answering a prompt."""
    return subprocess.run(
        [sys.executable, "-m", "wingman.ctl", *args],
        env=env.environ,
        input=stdin or "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def seed(url: str) -> None:
    with psycopg.connect(conninfo(url)) as conn:
        for n in range(20):
            conn.execute(
                "INSERT INTO users (id, email, display_name, tier) VALUES "
                "(gen_random_uuid(), %s, %s, %s)",
                (f"user{n}@example.org", f"User «{n}» ✓", "premium" if n % 3 else "free"),
            )
        for n in range(5):
            conn.execute(
                "INSERT INTO tones (id, slug, name, prompt, sort_order) VALUES "
                "(gen_random_uuid(), %s, %s, %s, %s)",
                (f"tone-{n}", f"Tone {n}", f"Be tone {n}.\nMulti-line; 'quoted'.", n),
            )
        conn.execute(
            "INSERT INTO global_config (key, value) VALUES "
            '(\'limits\', \'{"chat": 60, "ai": [20, 100], "nested": {"x": null}}\')'
        )


def snapshot(url: str) -> list[bytes]:
    """Each query's rows as PostgreSQL's own COPY text: equal bytes mean equal results."""
    out = []
    with psycopg.connect(conninfo(url)) as conn, conn.cursor() as cur:
        for query in SNAPSHOT_QUERIES:
            with cur.copy(f"COPY ({query}) TO STDOUT") as copy:
                out.append(b"".join(bytes(chunk) for chunk in copy))
    return out


def make_backup(env: Env) -> dict[str, object]:
    result = ctl(env, "backup", "--to", str(env.backups), "--json")
    assert result.returncode == 0, result.stderr
    manifest: dict[str, object] = json.loads(result.stdout)
    return manifest


def test_round_trip_restores_identical_rows(env: Env) -> None:
    seed(env.url)
    before = snapshot(env.url)
    assert all(before), "the seed must produce rows in every table compared"
    manifest = make_backup(env)
    assert manifest["migration_head"] == head_revision()
    assert manifest["database_revision"] == head_revision()
    archive = Path(str(manifest["path"]))
    assert archive.stat().st_mode & 0o077 == 0  # user data: owner-only

    with psycopg.connect(conninfo(env.url)) as conn:
        conn.execute("DELETE FROM users WHERE tier = 'free'")
        conn.execute("UPDATE tones SET prompt = 'changed', is_active = false")
        conn.execute("DELETE FROM global_config")
        conn.execute("INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'late@example.org')")
    assert snapshot(env.url) != before

    restored = ctl(env, "restore", str(archive), "--yes")
    assert restored.returncode == 0, restored.stderr
    for step in ("verifying the checksum", "restoring", "migrating to head", "complete"):
        assert step in restored.stderr
    assert snapshot(env.url) == before


def test_restore_accepts_the_manifest_path_and_asks_first(env: Env) -> None:
    seed(env.url)
    manifest = make_backup(env)
    archive = Path(str(manifest["path"]))
    with psycopg.connect(conninfo(env.url)) as conn:
        backed_up = conn.execute("SELECT count(*) FROM tones").fetchone()
        conn.execute("DELETE FROM tones")

    declined = ctl(env, "restore", str(archive.with_suffix(".manifest.json")), stdin="n\n")
    assert declined.returncode == 1
    assert "nothing was changed" in declined.stderr
    with psycopg.connect(conninfo(env.url)) as conn:
        assert conn.execute("SELECT count(*) FROM tones").fetchone() == (0,)

    accepted = ctl(env, "restore", str(archive.with_suffix(".manifest.json")), stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    with psycopg.connect(conninfo(env.url)) as conn:
        assert conn.execute("SELECT count(*) FROM tones").fetchone() == backed_up


def _refused(env: Env, archive: Path, expected: str) -> None:
    with psycopg.connect(conninfo(env.url)) as conn:
        conn.execute("INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'kept@example.org')")
    result = ctl(env, "restore", str(archive), "--yes")
    assert result.returncode == 64, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "stopping web" not in result.stderr  # refused before anything was touched
    with psycopg.connect(conninfo(env.url)) as conn:
        row = conn.execute("SELECT count(*) FROM users WHERE email = 'kept@example.org'").fetchone()
    assert row == (1,)


def test_truncated_archive_is_refused(env: Env) -> None:
    seed(env.url)
    archive = Path(str(make_backup(env)["path"]))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    _refused(env, archive, "is truncated or altered")


def test_flipped_byte_is_refused(env: Env) -> None:
    seed(env.url)
    archive = Path(str(make_backup(env)["path"]))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    _refused(env, archive, "is corrupt: its sha256 differs")


def test_backup_from_newer_code_is_refused(env: Env) -> None:
    archive = Path(str(make_backup(env)["path"]))
    manifest_file = archive.with_suffix(".manifest.json")
    manifest = json.loads(manifest_file.read_text())
    manifest["database_revision"] = manifest["migration_head"] = "9999"
    manifest["wingman_version"] = "9.0.0"
    manifest_file.write_text(json.dumps(manifest))
    _refused(env, archive, "was made by a newer Wingman (9.0.0, schema revision 9999)")


def test_archive_without_manifest_is_refused(env: Env) -> None:
    archive = Path(str(make_backup(env)["path"]))
    archive.with_suffix(".manifest.json").unlink()
    _refused(env, archive, "no manifest")


def test_unreadable_archive_with_a_matching_manifest_is_refused(env: Env) -> None:
    import hashlib

    archive = Path(str(make_backup(env)["path"]))
    garbage = b"not a pg_dump archive\n" * 100
    archive.write_bytes(garbage)
    manifest_file = archive.with_suffix(".manifest.json")
    manifest = json.loads(manifest_file.read_text())
    manifest["size"], manifest["sha256"] = len(garbage), hashlib.sha256(garbage).hexdigest()
    manifest_file.write_text(json.dumps(manifest))
    _refused(env, archive, "is not a readable archive")


def test_retention_and_list(env: Env) -> None:
    names = []
    for _ in range(3):
        result = ctl(env, "backup", "--to", str(env.backups), "--keep", "2", "--json")
        assert result.returncode == 0, result.stderr
        names.append(json.loads(result.stdout)["file"])
    assert f"retention: removed {names[0]}" in result.stderr

    listed = ctl(env, "backup", "list", "--dir", str(env.backups), "--json")
    assert listed.returncode == 0, listed.stderr
    backups = json.loads(listed.stdout)["backups"]
    assert [b["name"] for b in backups] == [names[2], names[1]]
    assert all(b["ok"] for b in backups)
    assert sorted(p.name for p in env.backups.iterdir()) == sorted(
        [*names[1:], *(n.replace(".dump", ".manifest.json") for n in names[1:])]
    )

    # A damaged archive shows up in the list and makes it exit 1.
    (env.backups / names[2]).write_bytes(b"short")
    damaged = ctl(env, "backup", "list", "--dir", str(env.backups))
    assert damaged.returncode == 1
    assert "differs from the manifest" in damaged.stdout


def test_backup_of_an_unreachable_database_fails_cleanly(env: Env, tmp_path: Path) -> None:
    from wingman.devstack.processes import free_port

    config = Path(env.environ["WINGMAN_CONFIG"])
    text = config.read_text().replace(
        env.url, f"postgresql+psycopg://w:x@127.0.0.1:{free_port()}/w"
    )
    config.write_text(text)
    result = ctl(env, "backup", "--to", str(env.backups))
    assert result.returncode == 2
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr
    assert not env.backups.exists() or not any(env.backups.iterdir())
