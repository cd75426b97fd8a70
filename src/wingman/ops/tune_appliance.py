"""The appliance's layout of ``wingmanctl tune --apply``: where each rendered file lives, and
the systemd units that reload or restart.

- :class:`ApplianceLayout`: ``/etc/postgresql/<major>/main/conf.d/wingman.conf`` and
  ``/etc/wingman/{redis-queue.conf,redis-cache.conf,tuning.toml}``, the front proxy's Caddyfile
  and the monitoring's configs; services through systemctl.
- :class:`FolderLayout`: the same tuned files, flat in one folder; touches no service (image
  builds, tests).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from wingman.config import Settings
from wingman.ops import alertmanager, appliance_monitoring, proxy
from wingman.ops.tune_activation import (
    ActivationError,
    app_processes_to_restart,
    by_kind,
    postgres_decision,
    redis_needs_restart,
    set_redis_live,
)
from wingman.ops.tune_files import ROLES, FileChange, RenderedFile, Report
from wingman.tuning.plan import TuningPlan
from wingman.tuning.render import postgres_conf, redis_conf, tuning_toml

APPLIANCE_ETC = Path("/etc/wingman")
APPLIANCE_REDIS_DIR = Path("/var/lib/wingman")
# Monitoring files (kind -> the unit that reads them), restarted when a file changed.
MONITORING_UNITS = {
    "prometheus": "wingman-prometheus.service",
    "monitoring-env": "wingman-prometheus.service",
    "alertmanager": "wingman-alertmanager.service",
    **{f"redis-exporter-{role}": f"wingman-redis-exporter@{role}.service" for role in ROLES},
}


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
            postgres_conf(plan, port=endpoints.postgres_port, socket_dir="/var/run/postgresql"),
        ),
    )
    for role in ROLES:
        text = redis_conf(
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
        kinds = by_kind(changes)
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
            change = kinds[f"redis-{role}"]
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
        kinds = by_kind(changes)
        _reload_proxy(kinds["proxy"], report)
        names = app_processes_to_restart(kinds.get("tuning"))
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
