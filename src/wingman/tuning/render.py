"""Config files from a tuning plan: each renderer reads the plan's data and returns text.

- :func:`postgres_conf`: the PostgreSQL drop-in (``appliance/postgresql/wingman.conf.tmpl``).
- :func:`redis_conf`: one Redis config per role (``appliance/redis/<role>.conf.tmpl``).
- :func:`tuning_toml`: the ``tuning.toml`` settings layer the web and worker processes read.
- :func:`pgbouncer_ini`: the ``[pgbouncer]`` fragment for an operator's PgBouncer.

Where the files go and what is reloaded is the layouts' job (``wingman.ops.tune_*``). The
templates are read from the shipped ``appliance/`` folder; nothing is written here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from wingman.ops.templates import render
from wingman.tuning.pgbouncer import PgBouncerPlan, pgbouncer_tuned
from wingman.tuning.plan import RedisPlan, Tuned, TuningPlan

# A TOML document whose every value carries its reason (written as a comment above it): tables
# nest as dicts, values are Tuned. The one structure both tuning.toml and its data come from.
Document = dict[str, Any]


def pg_size(kb: int) -> str:
    """A size in KiB spelled as PostgreSQL's SHOW spells it: the largest exact unit."""
    if kb % (1024 * 1024) == 0:
        return f"{kb // (1024 * 1024)}GB"
    if kb % 1024 == 0:
        return f"{kb // 1024}MB"
    return f"{kb}kB"


def redis_size(mb: int) -> str:
    return f"{mb}mb"


def _pg_number(value: float) -> str:
    # As SHOW prints it: 4 rather than 4.0.
    return f"{value:g}"


def _mb(tuned: Tuned[int]) -> Tuned[str | int]:
    return Tuned(pg_size(tuned.value * 1024), tuned.reason)


def _kb(tuned: Tuned[int]) -> Tuned[str | int]:
    return Tuned(pg_size(tuned.value), tuned.reason)


def _number(tuned: Tuned[float]) -> Tuned[str | int]:
    return Tuned(_pg_number(tuned.value), tuned.reason)


def _same(tuned: Tuned[int]) -> Tuned[str | int]:
    return Tuned(tuned.value, tuned.reason)


def postgres_tuned(plan: TuningPlan) -> dict[str, Tuned[str | int]]:
    """PostgreSQL settings by name, each spelled as the drop-in (and ``SHOW``) spells it, with
    the plan's reason."""
    pg = plan.postgres
    return {
        "max_connections": _same(pg.max_connections),
        "shared_buffers": _mb(pg.shared_buffers_mb),
        "effective_cache_size": _mb(pg.effective_cache_size_mb),
        "work_mem": _kb(pg.work_mem_kb),
        "maintenance_work_mem": _mb(pg.maintenance_work_mem_mb),
        "wal_buffers": _mb(pg.wal_buffers_mb),
        "min_wal_size": _mb(pg.min_wal_size_mb),
        "max_wal_size": _mb(pg.max_wal_size_mb),
        "checkpoint_completion_target": _number(pg.checkpoint_completion_target),
        "random_page_cost": _number(pg.random_page_cost),
        "effective_io_concurrency": _same(pg.effective_io_concurrency),
        "max_worker_processes": _same(pg.max_worker_processes),
        "max_parallel_workers": _same(pg.max_parallel_workers),
        "max_parallel_workers_per_gather": _same(pg.max_parallel_workers_per_gather),
        "max_parallel_maintenance_workers": _same(pg.max_parallel_maintenance_workers),
    }


def postgres_settings(plan: TuningPlan) -> dict[str, str | int]:
    """PostgreSQL settings as the drop-in spells them (as ``SHOW`` prints them, too)."""
    return {name: tuned.value for name, tuned in postgres_tuned(plan).items()}


def postgres_conf(plan: TuningPlan, *, port: int, socket_dir: str) -> str:
    """The PostgreSQL drop-in: the planned settings, listening on loopback at ``port``."""
    return render(
        "postgresql/wingman.conf.tmpl",
        {
            "listen_addresses": "127.0.0.1",
            "port": port,
            "socket_dir": socket_dir,
            **postgres_settings(plan),
        },
    )


def redis_plan(plan: TuningPlan, role: str) -> RedisPlan:
    """The plan of one Redis role: ``queue`` or ``cache``."""
    return plan.redis_queue if role == "queue" else plan.redis_cache


def redis_conf(
    plan: TuningPlan, role: str, *, port: int, password: str, dir: Path, daemonize: bool
) -> str:
    """The config of one Redis role; under systemd (``daemonize`` false) it logs to stdout."""
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
            "maxmemory": redis_size(redis_plan(plan, role).maxmemory_mb.value),
        },
    )


def tuning_document(plan: TuningPlan, *, trusted_proxies: list[str] | None = None) -> Document:
    """``tuning.toml`` as data: only keys of :class:`wingman.config.Settings`, each with its
    reason.

    With ``trusted_proxies`` (the appliance, behind its front proxy) Granian listens on
    loopback only and the app believes X-Forwarded-For from those addresses alone.
    """
    app = plan.app
    server: Document = {
        "workers": app.web_workers,
        "connections_per_worker": app.connections_per_worker,
        "backlog": app.backlog,
    }
    if trusted_proxies is not None:
        server["host"] = Tuned(
            "127.0.0.1",
            "Behind the front proxy (wingman-proxy, ports 80/443): never reachable from outside.",
        )
        server["trusted_proxies"] = Tuned(
            trusted_proxies,
            "The front proxy on loopback, and public.behind_proxy: their X-Forwarded-For counts.",
        )
    return {
        "server": server,
        "database": {"pool_size": app.pool_size},
        "worker": {
            "queues": {
                name: {"processes": queue.processes, "concurrency": queue.concurrency}
                for name, queue in app.queues.items()
            }
        },
    }


def document_values(document: Document) -> dict[str, Any]:
    """The document without its reasons: what TOML parses it back to."""
    return {
        key: document_values(value) if isinstance(value, dict) else value.value
        for key, value in document.items()
    }


def settings_overrides(plan: TuningPlan) -> dict[str, Any]:
    """The part of the plan the Wingman processes read: the ``tuning.toml`` layer's values."""
    return document_values(tuning_document(plan))


def tuning_toml(plan: TuningPlan, *, trusted_proxies: list[str] | None = None) -> str:
    """``tuning.toml``: :func:`tuning_document` encoded as TOML, each reason as a comment."""
    host = plan.host
    header = [
        "# Written by `wingmanctl tune` for "
        f"{host.cores} cores, {host.ram_mb} MiB RAM, {host.disk.upper()}; do not edit:",
        "# put overrides in wingman.toml or WINGMAN_* variables, which win over this file.",
    ]
    document = tuning_document(plan, trusted_proxies=trusted_proxies)
    return "\n".join(header) + "\n" + "".join(_toml_tables(document, ()))


def _toml_tables(table: Document, path: tuple[str, ...]) -> list[str]:
    """Each table that holds values as a TOML chunk (blank line, header, commented keys), then
    its sub-tables, as a TOML encoder orders them."""
    values = {k: v for k, v in table.items() if not isinstance(v, dict)}
    chunks = []
    if values:
        lines = [_nested(path, {})]
        for key, tuned in values.items():
            lines.append(f"# {tuned.reason}\n" + tomli_w.dumps({key: tuned.value}))
        chunks.append("\n" + "".join(lines))
    for key, value in table.items():
        if isinstance(value, dict):
            chunks += _toml_tables(value, (*path, key))
    return chunks


def _nested(path: tuple[str, ...], leaf: Document) -> str:
    """The header line of the table at ``path``, as the encoder writes it."""
    for key in reversed(path):
        leaf = {key: leaf}
    return tomli_w.dumps(leaf)


def pgbouncer_ini(bouncer: PgBouncerPlan) -> str:
    """A ``[pgbouncer]`` fragment for the operator's pgbouncer.ini (docs/scale-out.md)."""
    lines = [
        f"; Wingman's PgBouncer settings for {bouncer.app_nodes} app node(s) (wingmanctl tune).",
        "[pgbouncer]",
        "; Wingman keeps no session state between transactions (docs/scale-out.md).",
        "pool_mode = transaction",
    ]
    for name, tuned in pgbouncer_tuned(bouncer).items():
        lines += [f"; {tuned.reason}", f"{name} = {tuned.value}"]
    lines += [
        "; Wingman sends no startup parameter PgBouncer does not track: refuse any that come.",
        "ignore_startup_parameters =",
        "",
    ]
    return "\n".join(lines)
