"""``wingmanctl tune --apply --no-restart``: the boot-time mode of ``wingman-tune.service``.

At boot the plan is rendered before PostgreSQL and Redis start, so it must write the files and
touch no service even when none is reachable.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.services import child_env
from wingman.config import DatabaseSettings, RedisSettings, Settings


def tune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("wingman.ctl", "tune", *args, env=env, timeout=120)


def test_no_restart_writes_the_files_with_every_service_down(tmp_path: Path) -> None:
    # Ports where nothing listens: --no-restart must not try to reach them.
    settings = Settings(
        env="test",
        database=DatabaseSettings(url="postgresql+psycopg://wingman:pw@127.0.0.1:1/wingman"),
        redis=RedisSettings(
            queue_url="redis://:pw@127.0.0.1:2/0", cache_url="redis://:pw@127.0.0.1:3/0"
        ),
    )
    target = tmp_path / "target"
    args = ["--cores", "4", "--ram", "8", "--apply", "--no-restart", "--target-dir", str(target)]
    result = tune(child_env(settings, tmp_path / "etc"), *args, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["error"] is None
    # No service is touched; the role's marker files are files like the rest (none here).
    assert report["actions"] == [
        "files written; no service touched (--no-restart)",
        "node.role all-in-one: every unit starts",
    ]
    assert not (target / "no-data").exists()
    assert not (target / "no-app").exists()
    assert "max_worker_processes = 4" in (target / "postgresql" / "wingman.conf").read_text()
    assert "port 3" in (target / "redis-cache.conf").read_text()
    assert "workers = 4" in (target / "tuning.toml").read_text()


def test_no_restart_without_apply_is_a_usage_error(tmp_path: Path) -> None:
    result = tune(child_env(Settings(), tmp_path), "--no-restart")
    assert result.returncode == 64
    assert "--apply" in result.stderr
