"""``wingmanctl status``: every unit and service read directly, not through the web server.

Verdict: **down** (exit 2) when the API cannot serve — web, PostgreSQL or either Redis role is
down (the readiness probe needs all four) — or no client can reach it: the appliance's front
proxy is down (every request passes through it); **degraded** (exit 1) when anything else is
wrong — a worker down, a queue with no live worker, a resource near its limit, an old backup, a
retention sweep that has not finished for two days; otherwise **healthy** (exit 0).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec
import psycopg
from redis.asyncio import Redis
from saq.queue.redis import RedisQueue

from wingman.config import QUEUE_NAMES, Settings
from wingman.domain.retention.sweep import LAST_RUN_KEY, SweepReport
from wingman.ops import metrics, os_updates
from wingman.ops.backups import Connection, backup_age_seconds
from wingman.ops.diskspace import measure
from wingman.ops.units import PROXY_UNIT, UnitSource, UnitState
from wingman.server.redis import client as redis_client

RowState = Literal["ok", "warn", "fail", "n/a"]
Overall = Literal["healthy", "degraded", "down"]
EXIT_CODES: dict[Overall, int] = {"healthy": 0, "degraded": 1, "down": 2}
# Without any of these the API cannot answer (its readiness probe fails), or, without the
# appliance's front proxy, answers no client (a development stack has no such unit).
CRITICAL_UNITS = ("web", "postgres", "redis-queue", "redis-cache", PROXY_UNIT)
NEAR_LIMIT = 0.9
# A daily timer makes a backup every 24 h; a day and a half without one means it is failing.
BACKUP_MAX_AGE_S = 36 * 3600
NO_METRICS = "not available (no metrics endpoint)"


class StatusRow(msgspec.Struct, kw_only=True):
    group: str
    name: str
    state: RowState
    value: str
    # The raw numbers behind ``value``, for scripts.
    figures: dict[str, Any] = msgspec.field(default_factory=dict)


class StatusReport(msgspec.Struct, kw_only=True):
    layout: str
    checked_at: str
    overall: Overall
    exit_code: int
    rows: list[StatusRow]


def human_bytes(size: float | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def unit_row(unit: UnitState) -> StatusRow:
    figures = {k: v for k, v in msgspec.to_builtins(unit).items() if k != "name"}
    if not unit.up:
        return StatusRow(group="units", name=unit.name, state="fail", value="down", figures=figures)
    value = f"up, pid {unit.pid}, {human_duration(unit.uptime_s)}, {human_bytes(unit.memory_bytes)}"
    return StatusRow(group="units", name=unit.name, state="ok", value=value, figures=figures)


def overall(rows: list[StatusRow]) -> Overall:
    """Down when a unit or service the API needs is down; degraded when anything else is not ok."""
    if any(r.group == "units" and r.name in CRITICAL_UNITS and r.state == "fail" for r in rows):
        return "down"
    # PostgreSQL or a Redis role unreachable, whether or not its unit is visible from here.
    if any(r.group in ("postgres", "redis") and r.state == "fail" for r in rows):
        return "down"
    if any(r.state in ("warn", "fail") for r in rows):
        return "degraded"
    return "healthy"


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"unreachable: {text[0] if text else type(exc).__name__}"


# -- PostgreSQL --------------------------------------------------------------------------------

_PG_QUERY = """
SELECT
  (SELECT count(*) FROM pg_stat_activity) AS used,
  current_setting('max_connections')::int AS max,
  pg_database_size(current_database()) AS size,
  (SELECT sum(blks_hit)::float8 / nullif(sum(blks_hit) + sum(blks_read), 0)
     FROM pg_stat_database) AS hit_ratio,
  pg_is_in_recovery() AS standby,
  (SELECT count(*) FROM pg_stat_replication) AS replicas,
  (SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication) AS replica_lag_s
"""


async def postgres_rows(settings: Settings) -> list[StatusRow]:
    connection = Connection.from_url(settings.database.url)
    try:
        async with await psycopg.AsyncConnection.connect(
            connection.conninfo(), autocommit=True
        ) as conn:
            cursor = await conn.execute(_PG_QUERY)
            row = await cursor.fetchone()
    except (psycopg.Error, OSError) as exc:
        return [StatusRow(group="postgres", name="server", state="fail", value=_error(exc))]
    if row is None:  # one row always comes back; this keeps the types honest
        return [StatusRow(group="postgres", name="server", state="fail", value="no answer")]
    used, maximum, size, hit_ratio, standby, replicas, lag = row
    share = used / maximum
    rows = [
        StatusRow(
            group="postgres",
            name="connections",
            state="warn" if share >= NEAR_LIMIT else "ok",
            value=f"{used} / {maximum} ({share:.0%})",
            figures={"used": used, "max": maximum},
        ),
        StatusRow(
            group="postgres",
            name="database size",
            state="ok",
            value=human_bytes(size),
            figures={"bytes": size},
        ),
        StatusRow(
            group="postgres",
            name="cache hit ratio",
            state="ok",
            value="no reads yet" if hit_ratio is None else f"{hit_ratio:.2%}",
            figures={"ratio": hit_ratio},
        ),
        StatusRow(
            group="postgres",
            name="replication",
            state="ok",
            value=(
                "standby (replaying from a primary)"
                if standby
                else f"primary, {replicas} replica(s)"
                + (f", max lag {lag:.1f} s" if lag is not None else "")
            ),
            figures={"standby": standby, "replicas": replicas, "max_lag_s": lag},
        ),
    ]
    return rows


def backup_row(settings: Settings, folder: Path) -> StatusRow:
    age = backup_age_seconds(folder)
    if age is None:
        # A fresh development stack has no backup; the appliance's daily timer must have made one.
        return StatusRow(
            group="postgres",
            name="last backup",
            state="warn" if settings.is_production else "ok",
            value=f"none in {folder}",
            figures={"age_s": None, "folder": str(folder)},
        )
    return StatusRow(
        group="postgres",
        name="last backup",
        state="warn" if age > BACKUP_MAX_AGE_S else "ok",
        value=f"{human_duration(age)} ago",
        figures={"age_s": round(age, 1), "folder": str(folder)},
    )


# -- Redis and queues --------------------------------------------------------------------------


def _client(url: str) -> Redis:
    return redis_client(url, timeout=3)


async def redis_row(role: str, url: str) -> StatusRow:
    client = _client(url)
    try:
        memory = await client.info("memory")
        stats = await client.info("stats")
    except Exception as exc:  # noqa: BLE001 - any failure is "unreachable", reported by name
        return StatusRow(group="redis", name=role, state="fail", value=_error(exc))
    finally:
        await client.aclose()
    used, maximum = int(memory["used_memory"]), int(memory.get("maxmemory", 0))
    evicted = int(stats.get("evicted_keys", 0))
    policy = str(memory.get("maxmemory_policy", ""))
    share = used / maximum if maximum else None
    # The queue role never evicts (noeviction): near its limit, writes start failing.
    state: RowState = (
        "warn" if share is not None and share >= NEAR_LIMIT and role == "queue" else "ok"
    )
    limit = f"{human_bytes(maximum)} ({share:.0%})" if share is not None else "no limit"
    return StatusRow(
        group="redis",
        name=role,
        state=state,
        value=f"{human_bytes(used)} / {limit}, {evicted} evicted, {policy}",
        figures={"used": used, "maxmemory": maximum, "evicted_keys": evicted, "policy": policy},
    )


async def queue_rows(settings: Settings, units: dict[str, UnitState]) -> list[StatusRow]:
    client = _client(settings.redis.queue_url)
    rows = []
    try:
        for name in QUEUE_NAMES:
            queue = RedisQueue(client, name=name)
            try:
                info = await queue.info()
            except Exception as exc:  # noqa: BLE001 - reported as the row's value
                rows.append(StatusRow(group="queues", name=name, state="fail", value=_error(exc)))
                continue
            workers = info["workers"]
            # Jobs that ended failed (after their retries) since each live worker started.
            failed = 0
            for worker in workers.values():
                stats = worker.get("stats")
                failed += int(stats["failed"]) if stats else 0
            unit = units.get(f"worker-{name}")
            state: RowState = "ok"
            if unit is not None and not unit.up:
                state = "fail"
            elif not workers:
                state = "warn"
            rows.append(
                StatusRow(
                    group="queues",
                    name=name,
                    state=state,
                    value=(
                        f"{info['queued']} queued, {info['active']} active, "
                        f"{info['scheduled']} scheduled, {failed} failed, "
                        f"{len(workers)} worker(s)"
                    ),
                    figures={
                        "queued": info["queued"],
                        "active": info["active"],
                        "scheduled": info["scheduled"],
                        "failed": failed,
                        "workers": len(workers),
                    },
                )
            )
    finally:
        await client.aclose()
    return rows


# A daily sweep that has not finished for two days is failing (or its worker is down).
RETENTION_MAX_AGE_S = 48 * 3600


async def retention_row(settings: Settings) -> StatusRow:
    """The last ``retention_sweep``: when it finished and how many rows it removed per kind."""
    client = _client(settings.redis.queue_url)
    try:
        raw = await client.get(LAST_RUN_KEY)
    except Exception as exc:  # noqa: BLE001 - reported as the row's value
        return StatusRow(group="retention", name="last run", state="fail", value=_error(exc))
    finally:
        await client.aclose()
    if raw is None:
        return StatusRow(group="retention", name="last run", state="n/a", value="never ran")
    report = msgspec.json.decode(raw, type=SweepReport)
    age = (datetime.now(UTC) - report.finished_at).total_seconds()
    removed = ", ".join(f"{count} {kind}" for kind, count in report.removed.items())
    return StatusRow(
        group="retention",
        name="last run",
        state="warn" if age > RETENTION_MAX_AGE_S else "ok",
        value=f"{human_duration(age)} ago, removed {removed}",
        figures={
            "finished_at": report.finished_at.isoformat(),
            "age_s": round(age),
            "seconds": report.seconds,
            "removed": report.removed,
        },
    )


# -- web and disk ------------------------------------------------------------------------------


def metrics_url(settings: Settings) -> str:
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - not binding
    return f"http://{host}:{settings.server.port}/metrics"


def web_rows(settings: Settings, web_up: bool, window_s: float) -> list[StatusRow]:
    names = ("requests/s", "p95", "error rate", "websockets")
    found = metrics.sample(metrics_url(settings), window_s) if web_up else None
    if found is None:
        reason = NO_METRICS if web_up else "not available (web is down)"
        return [StatusRow(group="web", name=n, state="n/a", value=reason) for n in names]
    window = f"over {found.window_s:.0f} s"
    values = (
        (f"{found.requests_per_s:.1f} {window}", found.requests_per_s),
        (
            "no requests" if found.p95_ms is None else f"{found.p95_ms:.0f} ms {window}",
            found.p95_ms,
        ),
        (
            "no requests" if found.error_rate is None else f"{found.error_rate:.2%} {window}",
            found.error_rate,
        ),
        (
            "not exported" if found.websockets is None else f"{found.websockets:.0f}",
            found.websockets,
        ),
    )
    return [
        StatusRow(
            group="web",
            name=name,
            state="ok",
            value=text,
            figures={"value": number, "window_s": round(found.window_s, 2)},
        )
        for name, (text, number) in zip(names, values, strict=True)
    ]


def disk_rows(paths: list[Path]) -> list[StatusRow]:
    """Free space per data folder, judged by :func:`wingman.ops.diskspace.verdict`."""
    rows = []
    for path in paths:
        space = measure(path)
        rows.append(
            StatusRow(
                group="disk",
                name=str(path),
                state=space.state,
                value=f"{human_bytes(space.free)} free of {human_bytes(space.total)} "
                f"({space.share:.0%})",
                figures={"free": space.free, "total": space.total},
            )
        )
    return rows


# Security upgrades wait for the daily unattended run; pending this long after one (or this long
# after boot without any), the automatic upgrades are not working.
UPGRADE_RUN_MAX_AGE_S = 48 * 3600


def updates_rows(report: os_updates.UpdatesReport, restart_window: str) -> list[StatusRow]:
    """The operating system's security upgrades, services on replaced files, a newer kernel."""
    security = report.security
    names = [u.name for u in security]
    last = datetime.fromisoformat(report.last_upgrade_run) if report.last_upgrade_run else None
    since = (datetime.now(UTC) - last).total_seconds() if last else report.uptime_s
    late = since > UPGRADE_RUN_MAX_AGE_S
    state: RowState
    if report.apt_error:
        state, text = "warn", f"pending upgrades unknown: {report.apt_error}"
    elif not report.lists_fetched:
        state = "warn" if late else "n/a"
        text = "package lists not fetched yet (apt-daily.timer; it needs the Debian mirrors)"
    elif security:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        state = "warn" if late else "ok"
        text = f"{len(security)} pending ({shown}); last unattended run: {last or 'never'}"
    else:
        state, text = "ok", f"none pending; last unattended run: {last or 'never'}"
    rows = [
        StatusRow(
            group="updates",
            name="security",
            state=state,
            value=text,
            figures={
                "pending": len(security),
                "packages": names,
                "other_pending": len(report.upgrades) - len(security),
                "last_run": report.last_upgrade_run,
            },
        )
    ]
    ours, others = os_updates.restart_plan(report.units)
    when = f"in the window {restart_window}" if restart_window else "within 15 minutes"
    parts = [f"{', '.join(ours)} (restarted {when})"] if ours else []
    parts += [f"{', '.join(others)} (reboot, or restart by hand)"] if others else []
    rows.append(
        StatusRow(
            group="updates",
            name="restart",
            state="warn" if parts else "ok",
            value="; ".join(parts) or "no service runs replaced files",
            figures={"wingman": ours, "other": others},
        )
    )
    rows.append(
        StatusRow(
            group="updates",
            name="reboot",
            state="warn" if report.newer_kernel else "ok",
            value=f"kernel {report.newer_kernel} installed: reboot to run it"
            if report.newer_kernel
            else "not needed",
            figures={"newer_kernel": report.newer_kernel},
        )
    )
    return rows


# -- everything --------------------------------------------------------------------------------


def collect(
    settings: Settings, source: UnitSource, backup_dir: Path, metrics_window_s: float
) -> StatusReport:
    """Read every unit and service once and judge the whole."""
    # cluster_status builds its rows on this module's, so it is imported here.
    from wingman.ops.cluster_status import UNITS_NOT_HERE, cluster_rows  # noqa: PLC0415

    # A node of a cluster runs only its role's units (docs/scale-out.md).
    units = [u for u in source.units() if u.name not in UNITS_NOT_HERE[settings.node.role]]
    by_name = {unit.name: unit for unit in units}
    rows = [unit_row(unit) for unit in units]
    # Without visible units (settings-only layout) the endpoint itself tells whether web answers.
    web_up = by_name["web"].up if "web" in by_name else True
    rows += web_rows(settings, web_up, metrics_window_s)

    async def services() -> list[StatusRow]:
        results = await asyncio.gather(
            queue_rows(settings, by_name),
            postgres_rows(settings),
            redis_row("queue", settings.redis.queue_url),
            redis_row("cache", settings.redis.effective_cache_url),
            retention_row(settings),
        )
        queues, postgres, queue_redis, cache_redis, retention = results
        members = await cluster_rows(settings) if settings.node.role != "all-in-one" else []
        return [*members, *queues, *postgres, queue_redis, cache_redis, retention]

    rows += asyncio.run(services())
    # The backup row belongs with PostgreSQL's rows, ahead of Redis.
    position = max((i for i, r in enumerate(rows) if r.group == "postgres"), default=len(rows) - 1)
    rows.insert(position + 1, backup_row(settings, backup_dir))
    rows += disk_rows([*source.data_paths(), backup_dir])
    if source.kind == "appliance":  # a development machine's own updates are not Wingman's
        rows += updates_rows(os_updates.collect(), settings.updates.restart_window)
    verdict = overall(rows)
    return StatusReport(
        layout=source.kind,
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        overall=verdict,
        exit_code=EXIT_CODES[verdict],
        rows=rows,
    )
