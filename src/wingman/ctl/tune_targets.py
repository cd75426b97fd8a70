"""Where ``wingmanctl tune --apply`` writes the rendered plan, and what it reloads or restarts.

A *layout* names the files (PostgreSQL drop-in, one Redis config per role, ``tuning.toml``) and
knows how to bring the running services in line:

- :class:`ApplianceLayout`: ``/etc/postgresql/<major>/main/conf.d/wingman.conf`` and
  ``/etc/wingman/{redis-queue.conf,redis-cache.conf,tuning.toml}``; services through systemctl.
- :class:`DevLayout`: the files of a ``wingmanctl dev`` stack; its own processes.
- :class:`FolderLayout`: the same files as the appliance, flat in one folder; touches no service
  (image builds, tests).

PostgreSQL is reloaded when every changed setting can change at runtime and restarted when one
cannot (``pg_settings.context = 'postmaster'``). Redis takes maxmemory and its policy live
(``CONFIG SET``). Web and worker processes read ``tuning.toml`` at start, so the ones whose
settings changed are restarted.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import psycopg

from wingman.config import QUEUE_NAMES, Settings
from wingman.devstack.processes import RunAs, stop_process_group
from wingman.devstack.templates import render, write_private
from wingman.ops import alertmanager, appliance_monitoring, proxy
from wingman.server.redis import sync_client
from wingman.tuning import TuningPlan, postgres_settings, redis_size, tuning_toml

if TYPE_CHECKING:
    from wingman.devstack.redis import RedisServer
    from wingman.devstack.stack import DevStack

Report = Callable[[str], None]
ROLES = ("queue", "cache")
APPLIANCE_ETC = Path("/etc/wingman")
APPLIANCE_REDIS_DIR = Path("/var/lib/wingman")
# Monitoring files (kind -> the unit that reads them), restarted when a file changed.
MONITORING_UNITS = {
    "prometheus": "wingman-prometheus.service",
    "monitoring-env": "wingman-prometheus.service",
    "alertmanager": "wingman-alertmanager.service",
    **{f"redis-exporter-{role}": f"wingman-redis-exporter@{role}.service" for role in ROLES},
}


class ActivationError(RuntimeError):
    """A service could not be reloaded or restarted; the files were written."""


@dataclass(frozen=True, slots=True)
class RenderedFile:
    """One file of the plan; ``kind`` is postgres, redis-queue, redis-cache or tuning."""

    kind: str
    path: Path
    text: str
    # Redis configs carry the password; tuning.toml and the drop-in do not.
    mode: int = 0o644
    owner: RunAs = field(default_factory=RunAs)


@dataclass(frozen=True, slots=True)
class FileChange:
    file: RenderedFile
    before: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.file.text

    def diff(self) -> str:
        """Unified diff of what is there against the plan, with passwords masked."""
        before = _mask(self.before or "").splitlines(keepends=True)
        after = _mask(self.file.text).splitlines(keepends=True)
        name = str(self.file.path)
        return "".join(
            difflib.unified_diff(
                before,
                after,
                fromfile=f"{name} (in force)" if self.before is not None else "/dev/null",
                tofile=f"{name} (plan)",
            )
        )


# Secrets in the rendered files: Redis's password, the Redis exporters' copy of it, and the SMTP
# password and webhook secret in Alertmanager's JSON.
_SECRETS = (
    (re.compile(r'^(requirepass\s+)"[^"]*"', re.MULTILINE), r'\1"********"'),
    (re.compile(r"^(REDIS_PASSWORD=).*$", re.MULTILINE), r"\1********"),
    (re.compile(r'("(?:auth_password|credentials)": )"(?:[^"\\]|\\.)*"'), r'\1"********"'),
)


def _mask(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class Layout(Protocol):
    """Targets of one kind of installation."""

    def render(self, plan: TuningPlan) -> list[RenderedFile]: ...

    def activate(self, plan: TuningPlan, changes: list[FileChange], report: Report) -> None: ...


def write_changes(files: list[RenderedFile]) -> list[FileChange]:
    """Write every file whose content differs from the plan; return all with their old text."""
    changes: list[FileChange] = []
    for file in files:
        before = file.path.read_text() if file.path.is_file() else None
        change = FileChange(file, before)
        if change.changed:
            write_private(file.path, file.text, mode=file.mode)
            file.owner.own(file.path)
        changes.append(change)
    return changes


# -- rendering --------------------------------------------------------------------------------


def render_postgres(plan: TuningPlan, *, port: int, socket_dir: str) -> str:
    return render(
        "postgresql/wingman.conf.tmpl",
        {
            "listen_addresses": "127.0.0.1",
            "port": port,
            "socket_dir": socket_dir,
            **postgres_settings(plan),
        },
    )


def render_redis(
    plan: TuningPlan, role: str, *, port: int, password: str, dir: Path, daemonize: bool
) -> str:
    redis_plan = plan.redis_queue if role == "queue" else plan.redis_cache
    return render(
        f"redis/{role}.conf.tmpl",
        {
            "bind": "127.0.0.1",
            "port": port,
            "password": password,
            "dir": dir,
            "pidfile": dir / "redis.pid",
            # Under systemd Redis logs to stdout (the journal); a daemon needs a file.
            "logfile": dir / "redis.log" if daemonize else "",
            "daemonize": "yes" if daemonize else "no",
            "maxmemory": redis_size(redis_plan.maxmemory_mb.value),
        },
    )


# -- bringing services in line ----------------------------------------------------------------


def postgres_decision(conninfo: str, plan: TuningPlan) -> tuple[list[str], list[str]]:
    """Settings whose running value differs from the plan: (reloadable, needing a restart)."""
    wanted = {k: str(v) for k, v in postgres_settings(plan).items()}
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT name, current_setting(name), context FROM pg_settings WHERE name = ANY(%s)",
            (list(wanted),),
        ).fetchall()
    reload: list[str] = []
    restart: list[str] = []
    for name, running, context in rows:
        if _same_setting(running, wanted[name]):
            continue
        (restart if context == "postmaster" else reload).append(name)
    return sorted(reload), sorted(restart)


def _same_setting(running: str, wanted: str) -> bool:
    try:
        return float(running) == float(wanted)
    except ValueError:
        return running == wanted


def reload_postgres(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_reload_conf()")


def set_redis_live(url: str, plan: TuningPlan, role: str) -> bool:
    """``CONFIG SET`` maxmemory and its policy; True when a running value changed."""
    redis_plan = plan.redis_queue if role == "queue" else plan.redis_cache
    wanted = {
        "maxmemory": str(redis_plan.maxmemory_mb.value * 1024 * 1024),
        "maxmemory-policy": redis_plan.maxmemory_policy.value,
    }
    client = sync_client(url, timeout=5, decode_responses=True)
    try:
        changed = False
        for key, value in wanted.items():
            if client.config_get(key).get(key) != value:
                client.config_set(key, value)
                changed = True
        return changed
    finally:
        client.close()


def redis_needs_restart(change: FileChange) -> bool:
    """True when lines other than maxmemory changed (those are set live)."""

    def rest(text: str | None) -> list[str]:
        return [line for line in (text or "").splitlines() if not line.startswith("maxmemory ")]

    return change.before is None or rest(change.before) != rest(change.file.text)


def app_processes_to_restart(change: FileChange | None) -> list[str]:
    """Web and worker processes whose settings in ``tuning.toml`` changed."""
    if change is None or not change.changed:
        return []
    before: dict[str, Any] = tomllib.loads(change.before) if change.before else {}
    after = tomllib.loads(change.file.text)
    database_changed = before.get("database") != after.get("database")
    names = []
    if database_changed or before.get("server") != after.get("server"):
        names.append("web")
    queues_before = before.get("worker", {}).get("queues", {})
    queues_after = after.get("worker", {}).get("queues", {})
    for queue in QUEUE_NAMES:
        if database_changed or queues_before.get(queue) != queues_after.get(queue):
            names.append(f"worker-{queue}")
    return names


def _by_kind(changes: list[FileChange]) -> dict[str, FileChange]:
    return {change.file.kind: change for change in changes}


# -- the layouts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Ports and the Redis password, from the settings the processes use to reach them."""

    postgres_port: int
    redis_ports: dict[str, int]
    redis_password: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Endpoints:
        pg = urlsplit(
            settings.database.effective_direct_url.replace("postgresql+psycopg", "postgresql", 1)
        )
        queue = urlsplit(settings.redis.queue_url)
        queue_port = queue.port or 6379
        # One URL for both roles is a development shortcut; the appliance runs two instances.
        cache_port = urlsplit(settings.redis.cache_url).port if settings.redis.cache_url else None
        return cls(
            postgres_port=pg.port or 5432,
            redis_ports={"queue": queue_port, "cache": cache_port or queue_port + 1},
            redis_password=queue.password or "",
        )


@dataclass
class FolderLayout:
    """The appliance's files, flat in ``root``; no service is touched."""

    root: Path
    endpoints: Endpoints

    def render(self, plan: TuningPlan) -> list[RenderedFile]:
        return _appliance_files(
            plan, self.endpoints, self.root / "postgresql" / "wingman.conf", self.root
        )

    def activate(self, plan: TuningPlan, changes: list[FileChange], report: Report) -> None:
        report(f"files written to {self.root}; no service touched (--target-dir)")


def _appliance_files(
    plan: TuningPlan,
    endpoints: Endpoints,
    postgres_path: Path,
    etc: Path,
    trusted_proxies: list[str] | None = None,
) -> list[RenderedFile]:
    tuning = tuning_toml(plan, trusted_proxies=trusted_proxies)
    files = [RenderedFile("tuning", etc / "tuning.toml", tuning)]
    if not plan.runs_data:
        # An app node: PostgreSQL and Redis run on the data node, configured there.
        return files
    files.insert(
        0,
        RenderedFile(
            "postgres",
            postgres_path,
            render_postgres(plan, port=endpoints.postgres_port, socket_dir="/var/run/postgresql"),
        ),
    )
    for role in ROLES:
        text = render_redis(
            plan,
            role,
            port=endpoints.redis_ports[role],
            password=endpoints.redis_password,
            dir=APPLIANCE_REDIS_DIR / f"redis-{role}",
            daemonize=False,
        )
        files.insert(
            -1, RenderedFile(f"redis-{role}", etc / f"redis-{role}.conf", text, mode=0o640)
        )
    return files


def _systemctl(*args: str) -> None:
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ActivationError(f"systemctl {' '.join(args)}: {result.stderr.strip()}")


def _reload_proxy(change: FileChange, report: Report) -> None:
    if not change.changed:
        report("proxy: config unchanged")
        return
    try:
        report(f"proxy: {proxy.reload_running()}")
    except proxy.ProxyConfigError as exc:
        raise ActivationError(str(exc)) from exc


def monitoring_files(settings: Settings, etc: Path, data_volume: Path) -> list[RenderedFile]:
    """Prometheus's config and retention (by the data volume's size), Alertmanager's config
    and the Redis exporters' settings; the ones holding secrets are root-only."""
    disk_mb = shutil.disk_usage(data_volume if data_volume.exists() else "/").total // 2**20
    retention = appliance_monitoring.prometheus_retention(disk_mb)
    endpoints = Endpoints.from_settings(settings)
    files = [
        RenderedFile(
            "prometheus",
            etc / "prometheus.yml",
            appliance_monitoring.appliance_prometheus_config(settings),
        ),
        RenderedFile(
            "monitoring-env", etc / "monitoring.env", appliance_monitoring.monitoring_env(retention)
        ),
        RenderedFile(
            "alertmanager",
            etc / "alertmanager.yml",
            alertmanager.alertmanager_config(settings),
            mode=0o600,
        ),
    ]
    for role in ROLES:
        text = appliance_monitoring.redis_exporter_env(
            role, redis_port=endpoints.redis_ports[role], password=endpoints.redis_password
        )
        files.append(
            RenderedFile(f"redis-exporter-{role}", etc / f"redis-exporter-{role}.env", text, 0o600)
        )
    return files


def _restart_monitoring(changes: list[FileChange], report: Report) -> None:
    units = sorted(
        {
            MONITORING_UNITS[c.file.kind]
            for c in changes
            if c.changed and c.file.kind in MONITORING_UNITS
        }
    )
    if units:
        _systemctl("try-restart", *units)
        report(f"restarted {', '.join(units)}: their config changed")
    else:
        report("monitoring: configs unchanged")


@dataclass
class ApplianceLayout:
    """The installed appliance: files under /etc, services under systemd."""

    settings: Settings
    postgres_major: int

    def render(self, plan: TuningPlan) -> list[RenderedFile]:
        """The tuned files, Granian behind the front proxy, and the proxy's config (checked
        with ``caddy validate``: :class:`ProxyConfigError` when refused, nothing written)."""
        dropin = Path(f"/etc/postgresql/{self.postgres_major}/main/conf.d/wingman.conf")
        files = _appliance_files(
            plan,
            Endpoints.from_settings(self.settings),
            dropin,
            APPLIANCE_ETC,
            # An app node behind a load balancer listens where [server] says, and believes
            # X-Forwarded-For from server.trusted_proxies (the balancer) alone.
            trusted_proxies=proxy.trusted_proxies(self.settings) if plan.role != "app" else None,
        )
        if plan.runs_app:
            caddyfile = proxy.validate(self.settings)
            files.append(RenderedFile("proxy", Path(self.settings.public.config_path), caddyfile))
        monitoring = monitoring_files(self.settings, APPLIANCE_ETC, APPLIANCE_REDIS_DIR)
        if not plan.runs_data:
            monitoring = [f for f in monitoring if not f.kind.startswith("redis-exporter")]
        return files + monitoring

    def activate(self, plan: TuningPlan, changes: list[FileChange], report: Report) -> None:
        if plan.runs_data:
            self._activate_data(plan, changes, report)
        _restart_monitoring(changes, report)
        if plan.runs_app:
            self._activate_app(changes, report)

    def _activate_data(self, plan: TuningPlan, changes: list[FileChange], report: Report) -> None:
        by_kind = _by_kind(changes)
        conninfo = self.settings.database.effective_direct_url.replace(
            "postgresql+psycopg", "postgresql", 1
        )
        try:
            reload, restart = postgres_decision(conninfo, plan)
        except psycopg.Error as exc:
            raise ActivationError(f"postgres: cannot read pg_settings: {exc}") from exc
        if restart:
            _systemctl("restart", "postgresql.service")
            report(f"postgres: restarted (systemctl): {', '.join(restart)} need a restart")
        elif reload:
            _systemctl("reload", "postgresql.service")
            report(f"postgres: reloaded (systemctl): {', '.join(reload)} change at runtime")
        else:
            report("postgres: running values already match the plan")
        urls = {"queue": self.settings.redis.queue_url, "cache": self.settings.redis.cache_url}
        for role in ROLES:
            unit = f"wingman-redis@{role}.service"
            change = by_kind[f"redis-{role}"]
            if change.changed and redis_needs_restart(change):
                _systemctl("try-restart", unit)
                report(f"redis-{role}: restarted ({unit}): its config changed beyond maxmemory")
            elif not urls[role]:
                report(f"redis-{role}: no URL for it in the settings; not checked")
            elif set_redis_live(urls[role], plan, role):
                report(f"redis-{role}: maxmemory set live (CONFIG SET), no restart")
            else:
                report(f"redis-{role}: running values already match the plan")

    def _activate_app(self, changes: list[FileChange], report: Report) -> None:
        by_kind = _by_kind(changes)
        _reload_proxy(by_kind["proxy"], report)
        names = app_processes_to_restart(by_kind.get("tuning"))
        units = [
            "wingman-web.service"
            if name == "web"
            else f"wingman-{name.replace('-', '@', 1)}.service"
            for name in names
        ]
        if units:
            _systemctl("try-restart", *units)
            report(f"restarted {', '.join(units)}: tuning.toml changed their settings")
        else:
            report("web and workers: tuning.toml unchanged, nothing to restart")


@dataclass
class DevLayout:
    """A ``wingmanctl dev`` stack: its drop-in, Redis configs and ``tuning.toml``."""

    data_dir: Path

    def _stack(self) -> DevStack:
        # Imported when used: the dev stack pulls in migrations and an HTTP client.
        from wingman.devstack.stack import DevStack

        return DevStack(self.data_dir)

    def render(self, plan: TuningPlan) -> list[RenderedFile]:
        stack = self._stack()
        state = stack.state()
        pg = stack.postgres(state)
        files = [
            RenderedFile(
                "postgres",
                pg.dropin,
                render_postgres(plan, port=pg.port, socket_dir=""),
                owner=pg.run_as,
            )
        ]
        for role in ROLES:
            server = stack.redis(role, state)
            text = render_redis(
                plan,
                role,
                port=server.port,
                password=server.password,
                dir=server.dir,
                daemonize=True,
            )
            files.append(
                RenderedFile(
                    f"redis-{role}", server.conf_file, text, mode=0o600, owner=server.run_as
                )
            )
        files.append(RenderedFile("tuning", stack.root / "tuning.toml", tuning_toml(plan)))
        return files

    def activate(self, plan: TuningPlan, changes: list[FileChange], report: Report) -> None:
        stack = self._stack()
        state = stack.state()
        by_kind = _by_kind(changes)
        pg = stack.postgres(state)
        if not pg.running():
            report("postgres: not running; the drop-in takes effect when it starts")
        else:
            reload, restart = postgres_decision(pg.conninfo(), plan)
            if restart:
                pg.stop()
                pg.start()
                report(f"postgres: restarted: {', '.join(restart)} need a restart")
            elif reload:
                reload_postgres(pg.conninfo())
                report(f"postgres: reloaded: {', '.join(reload)} change at runtime")
            else:
                report("postgres: running values already match the plan")
        for role in ROLES:
            server = stack.redis(role, state)
            change = by_kind[f"redis-{role}"]
            if not server.running():
                report(f"redis-{role}: not running; the config takes effect when it starts")
            elif change.changed and redis_needs_restart(change):
                server.stop()
                _start_redis(server, plan, role)
                report(f"redis-{role}: restarted: its config changed beyond maxmemory")
            elif set_redis_live(server.url(), plan, role):
                report(f"redis-{role}: maxmemory set live (CONFIG SET), no restart")
            else:
                report(f"redis-{role}: running values already match the plan")
        for name in app_processes_to_restart(by_kind.get("tuning")):
            if _restart_dev_process(stack, name):
                report(f"{name}: restarted: tuning.toml changed its settings")


def _start_redis(server: RedisServer, plan: TuningPlan, role: str) -> None:
    """Start a dev Redis with the planned maxmemory (its start renders the same template)."""
    redis_plan = plan.redis_queue if role == "queue" else plan.redis_cache
    server.maxmemory = redis_size(redis_plan.maxmemory_mb.value)
    server.start()


def _restart_dev_process(stack: DevStack, name: str) -> bool:
    """Stop a running dev web/worker process gracefully and start it as `dev up` does."""
    pid = stack._app_pid(name)
    if pid is None:
        return False
    stop_process_group(pid, 30)
    stack._spawn(name, stack._app_commands()[name])
    return True
