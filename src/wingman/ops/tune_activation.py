"""Bringing running services in line with a written tuning plan, without restarting more than
needed.

PostgreSQL is reloaded when every changed setting can change at runtime and restarted when one
cannot (``pg_settings.context = 'postmaster'``). Redis takes maxmemory and its policy live
(``CONFIG SET``). Web and worker processes read ``tuning.toml`` at start, so the ones whose
settings changed are restarted.
"""

from __future__ import annotations

import tomllib
from typing import Any

import psycopg

from wingman.config import QUEUE_NAMES
from wingman.ops.tune_files import FileChange
from wingman.server.redis import sync_client
from wingman.tuning.plan import TuningPlan
from wingman.tuning.render import postgres_settings, redis_plan


class ActivationError(RuntimeError):
    """A service could not be reloaded or restarted; the files were written."""


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
    planned = redis_plan(plan, role)
    wanted = {
        "maxmemory": str(planned.maxmemory_mb.value * 1024 * 1024),
        "maxmemory-policy": planned.maxmemory_policy.value,
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


def by_kind(changes: list[FileChange]) -> dict[str, FileChange]:
    return {change.file.kind: change for change in changes}
