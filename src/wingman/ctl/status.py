"""``wingmanctl status``: is Wingman healthy? Every unit and service, read directly."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from wingman.ctl.layout import layout_option, resolve
from wingman.ctl.output import emit_report, json_option

COLUMNS = ["group", "name", "state", "value"]


@click.command()
@layout_option
@click.option(
    "--metrics-window",
    type=click.FloatRange(0.5, 60),
    default=5.0,
    show_default=True,
    help="Seconds between the two /metrics scrapes that web rates are computed from.",
)
@json_option
def status(data_dir: Path | None, metrics_window: float, as_json: bool) -> None:
    """Show every unit, queue, database and Redis figure and judge the whole.

    \b
    Rows, by group:
      units     web, each worker, PostgreSQL, both Redis roles, and on the appliance the
                front proxy: up/down, pid, uptime, memory
      web       requests/s, p95 latency, error rate, WebSocket connections (from /metrics;
                "not available" while the web server exports no metrics)
      queues    queued, active, scheduled and failed jobs, live workers, per queue
      postgres  connections used vs max, database size, cache hit ratio, replication,
                age of the last backup
      redis     memory vs maxmemory, evictions, eviction policy, per role
      retention when the daily sweep of old rows last finished, rows removed per kind
                (warn when it has not finished for two days)
      disk      free space where the databases and backups live
      updates   (appliance) pending security upgrades, services on replaced files, a newer
                kernel waiting for a reboot

    Works while the web server is down: PostgreSQL and Redis are queried directly.

    \b
    Exit status:
      0  healthy
      1  degraded: a worker is down, a queue has no worker, a resource is near its limit,
         the retention sweep is overdue, or the last backup is too old
      2  down: web, PostgreSQL, a Redis role or the appliance's front proxy is down
         (the API cannot serve, or no client can reach it)
    """
    from wingman.ops.health import collect

    source, settings = resolve(data_dir)
    report = collect(settings, source, source.default_backup_dir(settings), metrics_window)
    emit_report(
        msgspec.to_builtins(report),
        [msgspec.to_builtins(row) for row in report.rows],
        COLUMNS,
        as_json=as_json,
        footer=f"overall: {report.overall} ({report.layout} layout)",
    )
    raise SystemExit(report.exit_code)
