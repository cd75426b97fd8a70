"""`wingmanctl tune --apply`: real PostgreSQL and Redis start with the rendered files, run the plan.

Small hosts are planned (2 cores, 3 GiB) so the clusters fit beside the test session's own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.support.cli import run_cli
from tests.support.services import child_env
from wingman.config import DEFAULT_CONFIG_PATH, DatabaseSettings, RedisSettings, Settings
from wingman.devstack.binaries import find_redis
from wingman.devstack.postgres import PostgresCluster
from wingman.devstack.processes import free_port, port_open, wait_for
from wingman.devstack.stack import DevStack
from wingman.ops.tune_activation import app_processes_to_restart
from wingman.ops.tune_appliance import ApplianceLayout
from wingman.ops.tune_files import FileChange
from wingman.ops.tune_host import detect_cores, detect_disk, detect_host, detect_ram_mb
from wingman.tuning.plan import HostFacts, plan_for
from wingman.tuning.render import postgres_settings, tuning_toml

HOST = ["--cores", "2", "--ram", "3"]
SHOWN = ["shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem"]
SHOWN += ["max_connections", "max_worker_processes", "random_page_cost"]


@pytest.fixture
def scratch() -> Iterator[Path]:
    # Outside pytest's tmp dir: the servers may run as the unprivileged service user.
    root = Path(tempfile.mkdtemp(prefix="wingman-tune-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def tune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("wingman.ctl", "tune", *args, env=env, timeout=180)


def rows_by_setting(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {row["setting"]: row["value"] for row in rows}


def pg_show(conninfo: str, names: list[str]) -> dict[str, str]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in names}  # type: ignore[index]


def redis_config(url: str) -> dict[str, str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {
            key: client.config_get(key)[key]
            for key in ("maxmemory", "maxmemory-policy", "appendonly")
        }
    finally:
        client.close()


def mb(value: str) -> int:
    assert value.endswith("mb"), value
    return int(value[:-2]) * 1024 * 1024


def test_json_rows_match_the_table_and_the_plan(tmp_path: Path) -> None:
    env = child_env(Settings(), tmp_path)
    as_json = tune(env, *HOST, "--disk", "ssd", "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [set(row) for row in rows] == [{"setting", "value", "reason"}] * len(rows)
    # Wide enough that no cell wraps: each row of the table is one line.
    table = tune({**env, "COLUMNS": "300"}, *HOST, "--disk", "ssd")
    lines = table.stdout.splitlines()
    for row in rows:
        line = next(line for line in lines if f" {row['setting']} " in line)
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        assert cells == [row["setting"], row["value"], row["reason"]]
    values = rows_by_setting(rows)
    plan = plan_for(HostFacts(cores=2, ram_mb=3 * 1024, disk="ssd"))
    for name, value in postgres_settings(plan).items():
        assert values[f"postgres.{name}"] == str(value)
    assert values["server.workers"] == str(plan.app.web_workers.value)
    assert values["host.cores"] == "2"


def test_help_of_every_option_is_there(tmp_path: Path) -> None:
    result = tune(child_env(Settings(), tmp_path), "--help")
    assert result.returncode == 0
    for option in ("--cores", "--ram", "--disk", "--apply", "--data-dir", "--target-dir"):
        assert option in result.stdout
    for option in ("--markdown", "--json", "Exit status", "64"):
        assert option in result.stdout


def test_target_dir_files_start_real_servers_with_the_planned_values(scratch: Path) -> None:
    pg_port, queue_port, cache_port = free_port(), free_port(), free_port()
    password = secrets.token_urlsafe(16)
    settings = Settings(
        env="test",
        database=DatabaseSettings(
            url=f"postgresql+psycopg://wingman:{password}@127.0.0.1:{pg_port}/postgres"
        ),
        redis=RedisSettings(
            queue_url=f"redis://:{password}@127.0.0.1:{queue_port}/0",
            cache_url=f"redis://:{password}@127.0.0.1:{cache_port}/0",
        ),
    )
    target = scratch / "target"
    result = tune(
        child_env(settings, scratch / "etc"),
        *HOST,
        "--apply",
        "--target-dir",
        str(target),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    values = rows_by_setting(report["plan"])
    assert {f["kind"] for f in report["files"]} == {
        "postgres",
        "redis-queue",
        "redis-cache",
        "tuning",
    }
    assert all(f["changed"] for f in report["files"])
    assert password not in result.stdout  # diffs mask the Redis password
    assert "no service touched" in report["actions"][0]

    # PostgreSQL: a fresh cluster including the rendered drop-in as it is.
    cluster = PostgresCluster(scratch / "postgres", pg_port, password)
    cluster.init()
    cluster.write_config()
    shutil.copy(target / "postgresql" / "wingman.conf", cluster.data_dir / "wingman.conf")
    cluster.run_as.own(cluster.data_dir / "wingman.conf")
    servers: list[subprocess.Popen[bytes]] = []
    try:
        # The appliance's socket folder belongs to the distribution's postgres user: TCP only here.
        _pg_ctl_start(cluster)
        shown = pg_show(cluster.conninfo(), SHOWN)
        assert shown == {name: values[f"postgres.{name}"] for name in SHOWN}

        for role, port in (("queue", queue_port), ("cache", cache_port)):
            folder = scratch / f"redis-{role}"
            folder.mkdir()
            # Redis enters `dir` while it reads the file, and the appliance's state folder is
            # made by systemd (StateDirectory=); a scratch folder stands in for it, nothing else
            # of the rendered file changes.
            rendered = (target / f"redis-{role}.conf").read_text()
            state_dir = f'dir "/var/lib/wingman/redis-{role}"\n'
            assert rendered.count(state_dir) == 1
            conf = folder / "redis.conf"
            conf.write_text(rendered.replace(state_dir, f'dir "{folder}"\n'))
            servers.append(
                subprocess.Popen(
                    [find_redis(), str(conf)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            assert wait_for(lambda port=port: port_open(port), 20)
            config = redis_config(f"redis://:{password}@127.0.0.1:{port}/0")
            assert int(config["maxmemory"]) == mb(values[f"redis.{role}.maxmemory"])
            assert config["maxmemory-policy"] == values[f"redis.{role}.maxmemory-policy"]
            assert config["appendonly"] == ("yes" if role == "queue" else "no")
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
        cluster.stop()

    tuning = (target / "tuning.toml").read_text()
    assert f"workers = {values['server.workers']}" in tuning


def _pg_ctl_start(cluster: PostgresCluster) -> None:
    result = subprocess.run(
        [
            cluster.binaries["pg_ctl"],
            "start",
            "--pgdata",
            str(cluster.data_dir),
            "--log",
            str(cluster.log_file),
            "--wait",
            "-o",
            "-c unix_socket_directories=''",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=cluster.root,
        user=cluster.run_as.uid,
        group=cluster.run_as.gid,
        extra_groups=cluster.run_as.extra_groups,
    )
    log = cluster.log_file.read_text() if cluster.log_file.is_file() else ""
    assert result.returncode == 0, result.stderr + log


def test_dev_stack_is_reloaded_or_restarted_only_as_needed(scratch: Path) -> None:
    stack = DevStack(scratch / "var")
    state = stack.state()
    pg = stack.postgres(state)
    pg.init()
    pg.write_config()
    pg.start()
    queue, cache = stack.redis("queue", state), stack.redis("cache", state)
    env = child_env(Settings(), scratch / "etc")
    try:
        queue.start()
        cache.start()
        pid_before = pg.pid()

        first = tune(
            env, *HOST, "--disk", "ssd", "--apply", "--data-dir", str(stack.root), "--json"
        )
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        values = rows_by_setting(report["plan"])
        actions = "\n".join(report["actions"])
        assert "postgres: restarted" in actions
        assert "shared_buffers" in actions
        assert "redis-queue: maxmemory set live" in actions
        assert pg.pid() != pid_before
        assert pg_show(pg.conninfo(), SHOWN) == {name: values[f"postgres.{name}"] for name in SHOWN}
        for server, role in ((queue, "queue"), (cache, "cache")):
            assert int(redis_config(server.url())["maxmemory"]) == mb(
                values[f"redis.{role}.maxmemory"]
            )
        tuning = (stack.root / "tuning.toml").read_text()
        assert f"pool_size = {values['database.pool_size']}" in tuning

        # Only planner costs change on HDD: both reload at runtime, nothing restarts.
        pid_tuned = pg.pid()
        second = tune(
            env, *HOST, "--disk", "hdd", "--apply", "--data-dir", str(stack.root), "--json"
        )
        assert second.returncode == 0, second.stderr
        actions = "\n".join(json.loads(second.stdout)["actions"])
        assert "postgres: reloaded: effective_io_concurrency, random_page_cost" in actions
        assert "restarted" not in actions
        assert pg.pid() == pid_tuned
        assert pg_show(pg.conninfo(), ["random_page_cost"]) == {"random_page_cost": "4"}
        files = {f["kind"]: f for f in json.loads(second.stdout)["files"]}
        assert "-random_page_cost = 1.1" in files["postgres"]["diff"]
        assert "+random_page_cost = 4" in files["postgres"]["diff"]
        # Only the header naming the host changed in tuning.toml: no web or worker restarts.
        changed_lines = [
            line
            for line in files["tuning"]["diff"].splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        assert changed_lines
        assert all(line[1:].startswith("#") for line in changed_lines)

        third = tune(env, *HOST, "--disk", "hdd", "--apply", "--data-dir", str(stack.root))
        assert third.returncode == 0, third.stderr
        assert "postgres: running values already match the plan" in third.stderr
        assert "unchanged" in third.stdout
    finally:
        for server in (queue, cache):
            server.stop()
        pg.stop()


def test_apply_to_a_missing_dev_stack_is_a_usage_error(scratch: Path) -> None:
    result = tune(child_env(Settings(), scratch), "--apply", "--data-dir", str(scratch / "none"))
    assert result.returncode == 64
    assert "no dev stack" in result.stderr
    assert result.stdout == ""  # no partial plan printed


@pytest.mark.skipif(DEFAULT_CONFIG_PATH.is_file(), reason="this host is an appliance")
def test_apply_without_an_appliance_names_the_choices(scratch: Path) -> None:
    result = tune(child_env(Settings(), scratch), "--apply")
    assert result.returncode == 64
    assert "--data-dir" in result.stderr
    assert "--target-dir" in result.stderr


def test_host_detection_reads_this_host() -> None:
    cores, source = detect_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert source
    ram_mb, _ = detect_ram_mb()
    meminfo = Path("/proc/meminfo").read_text().split()
    assert 0 < ram_mb <= int(meminfo[meminfo.index("MemTotal:") + 1]) // 1024
    disk, why = detect_disk(Path("/"))
    assert disk in ("ssd", "hdd")
    assert why
    given = detect_host(4, 8, "hdd", Path("/"))
    assert (given.facts.cores, given.facts.ram_mb, given.facts.disk) == (4, 8192, "hdd")
    assert given.sources == {
        "cores": "given (--cores)",
        "ram": "given (--ram)",
        "disk": "given (--disk)",
    }


def test_appliance_targets_and_which_processes_restart() -> None:
    settings = Settings(
        database=DatabaseSettings(url="postgresql+psycopg://wingman:pw@127.0.0.1:5433/wingman"),
        redis=RedisSettings(
            queue_url="redis://:secret@127.0.0.1:6379/0",
            cache_url="redis://:secret@127.0.0.1:6390/0",
        ),
    )
    small = plan_for(HostFacts(cores=2, ram_mb=4 * 1024))
    files = {f.kind: f for f in ApplianceLayout(settings, 15).render(small)}
    assert files["postgres"].path == Path("/etc/postgresql/15/main/conf.d/wingman.conf")
    assert "port = 5433" in files["postgres"].text
    assert files["redis-cache"].path == Path("/etc/wingman/redis-cache.conf")
    assert "port 6390" in files["redis-cache"].text
    assert files["redis-queue"].mode == 0o640  # it holds the password
    assert files["tuning"].path == Path("/etc/wingman/tuning.toml")
    # Granian behind the front proxy: loopback only, the proxy's X-Forwarded-For believed.
    behind = ["127.0.0.1", "::1"]
    assert 'host = "127.0.0.1"' in files["tuning"].text
    assert tomllib.loads(files["tuning"].text)["server"]["trusted_proxies"] == behind
    assert files["proxy"].path == Path("/etc/wingman/Caddyfile")
    assert "reverse_proxy 127.0.0.1:8000" in files["proxy"].text
    # The monitoring: each exporter finds its own Redis; Prometheus is sized and alerts go on.
    assert files["redis-exporter-cache"].path == Path("/etc/wingman/redis-exporter-cache.env")
    assert "REDIS_ADDR=redis://127.0.0.1:6390\n" in files["redis-exporter-cache"].text
    assert "REDIS_PASSWORD=secret\n" in files["redis-exporter-queue"].text
    assert "PROMETHEUS_RETENTION_SIZE=" in files["monitoring-env"].text
    assert '"127.0.0.1:9093"' in files["prometheus"].text
    assert files["alertmanager"].mode == 0o600

    # Only the queue whose section changed restarts; a database change restarts every process.
    large = plan_for(HostFacts(cores=2, ram_mb=4 * 1024, disk="hdd"))
    same = FileChange(files["tuning"], tuning_toml(large, trusted_proxies=behind))
    assert app_processes_to_restart(same) == []
    heavy_only = tuning_toml(small, trusted_proxies=behind).replace(
        "[worker.queues.heavy]\n", "[worker.queues.heavy]\ntimeout = 60\n"
    )
    assert app_processes_to_restart(FileChange(files["tuning"], heavy_only)) == ["worker-heavy"]
    pool = tuning_toml(small, trusted_proxies=behind).replace("pool_size = 4", "pool_size = 9")
    assert app_processes_to_restart(FileChange(files["tuning"], pool)) == [
        "web",
        "worker-ai",
        "worker-default",
        "worker-heavy",
    ]
