"""`wingmanctl migrate` on real databases: check, apply, and a clear error when unreachable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import msgspec

from tests.support.cli import bad_settings_env, run_cli
from tests.support.services import child_env
from wingman.config import DatabaseSettings, Settings
from wingman.db.migrations import head_revision
from wingman.devstack.processes import free_port


def ctl(settings: Settings, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("wingman.ctl", "migrate", *args, env=child_env(settings, folder))


def with_database(settings: Settings, url: str) -> Settings:
    return msgspec.structs.replace(settings, database=DatabaseSettings(url=url, connect_timeout=2))


def test_check_then_apply_then_check(
    settings: Settings, empty_database_url: str, tmp_path: Path
) -> None:
    fresh = with_database(settings, empty_database_url)

    pending = ctl(fresh, tmp_path, "--check", "--json")
    assert pending.returncode == 1, pending.stderr
    report = json.loads(pending.stdout)
    assert report["up_to_date"] is False
    assert report["pending"][-1] == head_revision()

    applied = ctl(fresh, tmp_path, "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["applied"] == report["pending"]

    done = ctl(fresh, tmp_path, "--check", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"head": head_revision(), "pending": [], "up_to_date": True}


def test_unreachable_database_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    dead = with_database(settings, f"postgresql+psycopg://wingman:x@127.0.0.1:{free_port()}/w")
    result = ctl(dead, tmp_path, "--check")
    assert result.returncode == 2
    assert "cannot read the schema version" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_bad_settings_naming_the_key(tmp_path: Path) -> None:
    env = bad_settings_env(tmp_path, '[server]\nport = "http"\n')
    result = run_cli("wingman.ctl", "serve", env=env)
    assert result.returncode == 1
    assert "server.port" in result.stderr
    assert "Traceback" not in result.stderr
