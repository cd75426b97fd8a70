"""``wingmanctl tune``: the tuning plan for this host, shown with reasons, applied on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec
import psycopg
import redis

from wingman.config import (
    DEFAULT_CONFIG_PATH,
    NODE_ROLES,
    NodeRole,
    Settings,
    SettingsError,
    load_settings,
)
from wingman.ctl.output import EXIT_DOWN, EXIT_USAGE, emit, progress
from wingman.ops.node_roles import apply_markers, skipped_units
from wingman.ops.proxy import ProxyConfigError
from wingman.ops.tune_activation import ActivationError
from wingman.ops.tune_appliance import APPLIANCE_ETC, ApplianceLayout, Endpoints, FolderLayout
from wingman.ops.tune_files import FileChange, Layout, write_changes
from wingman.ops.tune_host import detect_host
from wingman.tuning.pgbouncer import pgbouncer_plan
from wingman.tuning.plan import DEFAULT_APP_NODES, TuningPlan, plan_for
from wingman.tuning.render import pgbouncer_ini as render_pgbouncer_ini
from wingman.tuning.rows import markdown_table, pgbouncer_rows, plan_rows

ROW_COLUMNS = ["setting", "value", "reason"]


def _rows(plan: TuningPlan, sources: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    if skipped := skipped_units(plan.role):
        rows.append(
            {
                "setting": "node.skipped_units",
                "value": ", ".join(skipped),
                "reason": "not needed by this role: their conditions read the marker file",
            }
        )
    for row in plan_rows(plan):
        reason = row.reason
        if row.setting.startswith("host."):
            reason = sources.get(row.setting.removeprefix("host."), reason)
        rows.append({"setting": row.setting, "value": row.value, "reason": reason})
    if rows and rows[0]["setting"] == "node.skipped_units":
        rows.insert(1, rows.pop(0))
    return rows


def _layout(data_dir: Path | None, target_dir: Path | None) -> Layout:
    if target_dir is not None:
        return FolderLayout(target_dir, Endpoints.from_settings(_settings()))
    if data_dir is not None:
        from wingman.devstack.stack import DevStack
        from wingman.ops.tune_dev import DevLayout

        if DevStack(data_dir).load_state() is None:
            click.echo(f"error: no dev stack in {data_dir} (run `wingmanctl dev up`)", err=True)
            raise SystemExit(EXIT_USAGE)
        return DevLayout(data_dir)
    # The appliance is recognised by its settings file, as the other wingmanctl commands do.
    if not DEFAULT_CONFIG_PATH.is_file():
        click.echo(
            f"error: no appliance here ({DEFAULT_CONFIG_PATH} does not exist); use --data-dir "
            "for a dev stack or --target-dir to write the files into a folder",
            err=True,
        )
        raise SystemExit(EXIT_USAGE)
    from wingman.devstack.binaries import MissingBinaryError, find_postgres

    try:
        major = find_postgres().major
    except MissingBinaryError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    return ApplianceLayout(_settings(), major)


def _pooled() -> bool:
    """True when the settings say the database is reached through PgBouncer; settings that do
    not load leave the plan as it is (the plan itself needs none)."""
    try:
        return load_settings().database.pooler == "pgbouncer"
    except SettingsError:
        return False


def _role_of_this_node(data_dir: Path | None, *, apply: bool) -> NodeRole:
    """node.role from the settings. A dev stack is one host with everything on it. A plan only
    shown needs no settings (all-in-one when they do not load); applying one does, since the
    role decides which services may start."""
    if data_dir is not None:
        return "all-in-one"
    if apply:
        return _settings().node.role
    try:
        return load_settings().node.role
    except SettingsError as exc:
        click.echo(f"note: settings not loaded ({exc}); planning an all-in-one node", err=True)
        return "all-in-one"


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from None


@click.command()
@click.option(
    "--cores", type=click.IntRange(1, 1024), help="CPU cores to plan for (default: detected)."
)
@click.option(
    "--ram",
    "ram_gb",
    type=click.FloatRange(1.5, 65536),
    help="RAM in GiB to plan for (default: detected, capped by a cgroup limit).",
)
@click.option(
    "--disk",
    type=click.Choice(["ssd", "hdd"]),
    help="Disk kind to plan for (default: detected from /sys/block/*/queue/rotational).",
)
@click.option(
    "--apply",
    is_flag=True,
    help="Write the rendered configs, show their diff against what is in force, and reload or "
    "restart only the services whose settings changed.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Apply to the `wingmanctl dev` stack in this folder instead of the appliance.",
)
@click.option(
    "--target-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Apply by writing the appliance's files into this folder; no service is touched.",
)
@click.option(
    "--no-restart",
    is_flag=True,
    help="With --apply: write the files and touch no service (at boot, before PostgreSQL and "
    "Redis start, they start with the new files).",
)
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the plan for the reference hosts (2/4 … 32/64 cores/GB) as in docs/tuning.md.",
)
@click.option(
    "--role",
    type=click.Choice(NODE_ROLES),
    help="Plan for a node of this role (default: node.role from the settings): an app node "
    "gives the host to web and workers, a data node to PostgreSQL and Redis.",
)
@click.option(
    "--app-nodes",
    type=click.IntRange(1, 64),
    default=DEFAULT_APP_NODES,
    show_default=True,
    help="For a data node: app nodes (of this host's size) whose pools max_connections holds.",
)
@click.option(
    "--pgbouncer",
    "pgbouncer_nodes",
    type=click.IntRange(1, 1000),
    help="Add PgBouncer's numbers for this many app nodes to the plan (default: 1 node when "
    "database.pooler is pgbouncer; docs/scale-out.md).",
)
@click.option(
    "--pgbouncer-ini",
    is_flag=True,
    help="Print only the pgbouncer.ini fragment for the plan (with --pgbouncer's node count).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def tune(  # noqa: PLR0917 - one parameter per click option
    cores: int | None,
    ram_gb: float | None,
    disk: str | None,
    apply: bool,
    data_dir: Path | None,
    target_dir: Path | None,
    no_restart: bool,
    markdown: bool,
    role: NodeRole | None,
    app_nodes: int,
    pgbouncer_nodes: int | None,
    pgbouncer_ini: bool,
    as_json: bool,
) -> None:
    """Compute the tuning plan for this host (or the one given) and show each value with why.

    Covers PostgreSQL memory, WAL, planner and parallel settings, Redis maxmemory and policy per
    role, Granian workers, the database pool per process and SAQ processes and concurrency per
    queue. With --apply the PostgreSQL drop-in, both Redis configs and tuning.toml are written
    (to the appliance's paths, a dev stack with --data-dir, or a folder with --target-dir), each
    file's diff against what is there is shown, and only what needs it is reloaded or restarted.
    On the appliance the front proxy's Caddyfile is rendered too (from the [public] settings),
    and tuning.toml keeps Granian on loopback behind it; so are the monitoring's configs
    (Prometheus with its retention sized by the data volume, Alertmanager from [monitoring] and
    [delivery], the Redis exporters), and the monitoring units whose config changed restart.

    The plan follows node.role (or --role): an app node renders tuning.toml only and keeps
    PostgreSQL, Redis and their exporters from starting; a data node renders PostgreSQL and
    Redis and keeps web, workers, migrations and the front proxy from starting (marker files
    /etc/wingman/no-data and no-app, read by the units' conditions; docs/scale-out.md).

    \b
    Exit status:
      0   plan shown (and applied with --apply; --no-restart only writes)
      2   a service could not be reloaded or restarted (the files are written), or the
          front proxy's config was refused by caddy validate (nothing written)
      64  bad usage: --data-dir without a dev stack, --apply with no appliance here
    """
    if markdown:
        click.echo(markdown_table(), nl=False)
        return
    _check_usage(apply=apply, no_restart=no_restart, data_dir=data_dir, target_dir=target_dir)
    probe = data_dir or Path("/var/lib/postgresql")
    detected = detect_host(cores, ram_gb, disk, probe)
    role = role or _role_of_this_node(data_dir, apply=apply)
    plan = plan_for(detected.facts, role, app_nodes)
    rows = _rows(plan, detected.sources)
    nodes = pgbouncer_nodes or (1 if pgbouncer_ini or _pooled() else None)
    if nodes is not None:
        bouncer = pgbouncer_plan(plan, nodes)
        if pgbouncer_ini:
            click.echo(render_pgbouncer_ini(bouncer), nl=False)
            return
        rows += [
            {"setting": r.setting, "value": r.value, "reason": r.reason}
            for r in pgbouncer_rows(bouncer)
        ]
    if not apply:
        emit(rows, ROW_COLUMNS, as_json=as_json, title="Tuning plan")
        return

    layout = _layout(data_dir, target_dir)
    try:
        rendered = layout.render(plan)
    except ProxyConfigError as exc:
        click.echo(f"error: {exc}; no file was written", err=True)
        raise SystemExit(EXIT_DOWN) from None
    changes = write_changes(rendered)
    actions: list[str] = []
    failure = None
    try:
        if no_restart:
            actions.append("files written; no service touched (--no-restart)")
        else:
            layout.activate(plan, changes, actions.append)
    except (ActivationError, OSError, psycopg.Error, redis.RedisError) as exc:
        failure = str(exc)
    if data_dir is None:
        # The appliance and --target-dir: tell the units which of them this role runs.
        actions += apply_markers(target_dir or APPLIANCE_ETC, role)
    _report_apply(rows, changes, actions, failure, as_json=as_json)
    if failure:
        raise SystemExit(EXIT_DOWN)


def _check_usage(
    *, apply: bool, no_restart: bool, data_dir: Path | None, target_dir: Path | None
) -> None:
    """Refuse option combinations that mean nothing (exit 64)."""
    problem = None
    if (data_dir is not None or target_dir is not None) and not apply:
        problem = "--data-dir and --target-dir choose where --apply writes"
    elif no_restart and not apply:
        problem = "--no-restart only makes sense with --apply"
    elif data_dir is not None and target_dir is not None:
        problem = "give --data-dir or --target-dir, not both"
    if problem is not None:
        click.echo(f"error: {problem}", err=True)
        raise SystemExit(EXIT_USAGE)


def _report_apply(
    rows: list[dict[str, Any]],
    changes: list[FileChange],
    actions: list[str],
    failure: str | None,
    *,
    as_json: bool,
) -> None:
    files = [
        {"path": str(c.file.path), "kind": c.file.kind, "changed": c.changed, "diff": c.diff()}
        for c in changes
    ]
    if as_json:
        report = {"plan": rows, "files": files, "actions": actions, "error": failure}
        click.echo(msgspec.json.encode(report).decode())
        return
    emit(rows, ROW_COLUMNS, as_json=False, title="Tuning plan")
    for file in files:
        if file["changed"]:
            click.echo(file["diff"])
        else:
            click.echo(f"{file['path']}: unchanged")
    for action in actions:
        progress(action)
    if failure:
        click.echo(f"error: {failure}", err=True)
