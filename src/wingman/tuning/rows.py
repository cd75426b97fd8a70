"""Views of a tuning plan for people: rows of setting, value and reason, and the Markdown table
of docs/tuning.md. Values are spelled as the rendered files spell them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from wingman.tuning.pgbouncer import PgBouncerPlan, pgbouncer_tuned
from wingman.tuning.plan import AppPlan, HostFacts, Tuned, TuningPlan, human_mb, plan_for
from wingman.tuning.render import postgres_tuned, redis_size


class PlanRow(msgspec.Struct, frozen=True):
    """One line of the plan as shown to an admin: ``setting`` is ``area.name``."""

    setting: str
    value: str
    reason: str


def plan_rows(plan: TuningPlan) -> list[PlanRow]:
    """The plan as rows of setting, value and reason: what ``wingmanctl tune`` shows."""
    mem, app = plan.memory, plan.app
    rows: list[PlanRow] = []

    def add(setting: str, value: str, tuned: Tuned[Any]) -> None:
        rows.append(PlanRow(setting, value, tuned.reason))

    host = plan.host
    if plan.role != "all-in-one":
        rows.append(PlanRow("node.role", plan.role, ROLE_REASONS[plan.role]))
    rows.append(PlanRow("host.cores", str(host.cores), "detected or given"))
    rows.append(PlanRow("host.ram", human_mb(host.ram_mb), "detected or given"))
    rows.append(PlanRow("host.disk", host.disk, "detected or given"))
    add("memory.os_headroom", human_mb(mem.os_headroom_mb.value), mem.os_headroom_mb)
    add("memory.postgres", human_mb(mem.postgres_mb.value), mem.postgres_mb)
    add("memory.redis", human_mb(mem.redis_mb.value), mem.redis_mb)
    add("memory.web", human_mb(mem.web_mb.value), mem.web_mb)
    add("memory.workers", human_mb(mem.workers_mb.value), mem.workers_mb)
    if plan.runs_data:
        _data_rows(plan, add)
    if plan.runs_app:
        _app_rows(app, add)
    return rows


def _data_rows(plan: TuningPlan, add: Callable[[str, str, Tuned[Any]], None]) -> None:
    for name, tuned in postgres_tuned(plan).items():
        add(f"postgres.{name}", str(tuned.value), tuned)
    for role, redis in (("queue", plan.redis_queue), ("cache", plan.redis_cache)):
        add(f"redis.{role}.maxmemory", redis_size(redis.maxmemory_mb.value), redis.maxmemory_mb)
        add(f"redis.{role}.maxmemory-policy", redis.maxmemory_policy.value, redis.maxmemory_policy)
        add(f"redis.{role}.persistence", redis.persistence.value, redis.persistence)


def _app_rows(app: AppPlan, add: Callable[[str, str, Tuned[Any]], None]) -> None:
    add("server.workers", str(app.web_workers.value), app.web_workers)
    add(
        "server.connections_per_worker",
        str(app.connections_per_worker.value),
        app.connections_per_worker,
    )
    add("server.backlog", str(app.backlog.value), app.backlog)
    add("database.pool_size", str(app.pool_size.value), app.pool_size)
    add("database.reserve", str(app.connection_reserve.value), app.connection_reserve)
    for name, queue in app.queues.items():
        add(f"worker.queues.{name}.processes", str(queue.processes.value), queue.processes)
        add(f"worker.queues.{name}.concurrency", str(queue.concurrency.value), queue.concurrency)


ROLE_REASONS: dict[str, str] = {
    "all-in-one": "everything on this host",
    "app": "web and workers; PostgreSQL and Redis on the data node",
    "data": "PostgreSQL and both Redis roles for the app nodes; no web, no workers",
}


def pgbouncer_rows(bouncer: PgBouncerPlan) -> list[PlanRow]:
    """PgBouncer's settings as rows of the plan's table."""
    return [
        PlanRow(f"pgbouncer.{name}", str(tuned.value), tuned.reason)
        for name, tuned in pgbouncer_tuned(bouncer).items()
    ]


# The hosts of the table in docs/tuning.md: (cores, GiB).
REFERENCE_HOSTS: tuple[tuple[int, int], ...] = ((2, 4), (4, 8), (8, 16), (16, 32), (32, 64))


def markdown_table(hosts: tuple[tuple[int, int], ...] = REFERENCE_HOSTS) -> str:
    """The plan for each host side by side, as a Markdown table (docs/tuning.md embeds it)."""
    plans = [plan_for(HostFacts(cores=c, ram_mb=g * 1024)) for c, g in hosts]
    columns = [plan_rows(p) for p in plans]
    header = "| setting | " + " | ".join(f"{c} cores / {g} GB" for c, g in hosts) + " |"
    lines = [header, "|" + " --- |" * (len(hosts) + 1)]
    for index, row in enumerate(columns[0]):
        if row.setting.startswith("host.") or row.setting.endswith(
            ("maxmemory-policy", "persistence")
        ):
            continue
        values = " | ".join(column[index].value for column in columns)
        lines.append(f"| `{row.setting}` | {values} |")
    return "\n".join(lines) + "\n"
