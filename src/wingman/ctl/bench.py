"""``wingmanctl bench``: the load profile against a running stack, and the capacity search."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from wingman.ctl.output import EXIT_DEGRADED, EXIT_DOWN, emit_object, progress

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var"),
    show_default=True,
    help="The development stack's folder (`make run` uses var).",
)
OUT = click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench/results"),
    show_default=True,
    help="Where the results files go.",
)


@click.group()
def bench() -> None:
    """Measure this host: the load profile (DESIGN section 10) and the capacity it holds."""


def _finish(result: dict[str, Any], out: Path, as_json: bool) -> None:
    from wingman.loadtest.report import markdown, write_results

    json_path, md_path = write_results(result, out)
    if as_json:
        emit_object(result, as_json=True)
    else:
        click.echo(markdown(result))
    progress(f"results written to {json_path} and {md_path}")


@bench.command("load")
@click.option("--users", type=click.IntRange(1, 100_000), required=True, help="Simulated users.")
@click.option(
    "--duration",
    type=click.FloatRange(5),
    default=120,
    show_default=True,
    help="Seconds measured after ramp-up.",
)
@click.option(
    "--ramp",
    type=click.FloatRange(0),
    default=30,
    show_default=True,
    help="Seconds to start all users.",
)
@click.option(
    "--cycle",
    type=click.FloatRange(5),
    default=60,
    show_default=True,
    help="Seconds per profile cycle (one message each).",
)
@click.option("--name", default="load", show_default=True, help="Name in the results file.")
@DATA_DIR
@OUT
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def load(
    *,
    users: int,
    duration: float,
    ramp: float,
    cycle: float,
    name: str,
    data_dir: Path,
    out: Path,
    as_json: bool,
) -> None:
    """Run USERS simulated users for DURATION seconds and check the budget.

    Each user signs in through the one-time-code flow, holds a WebSocket and, every CYCLE seconds
    with think time, lists sessions, opens one, sends a message and waits for its streamed reply,
    posts feedback and reads tones and config. Afterwards every reply is checked in the
    database. Exit codes: 0 budget met, 1 budget missed, 2 no stack to run against.
    """
    from wingman.loadtest.runner import LoadPlan, run_load

    plan = LoadPlan(
        users=users, duration=duration, data_dir=data_dir, ramp=ramp, cycle_seconds=cycle, name=name
    )
    try:
        result = asyncio.run(run_load(plan, progress))
    except (RuntimeError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    _finish(result, out, as_json)
    if not result["verdict"]["passed"]:
        raise SystemExit(EXIT_DEGRADED)


@bench.command("capacity")
@click.option(
    "--start", type=click.IntRange(1), default=100, show_default=True, help="First user count."
)
@click.option(
    "--step", type=click.IntRange(1), default=100, show_default=True, help="Users added per step."
)
@click.option("--max-users", type=click.IntRange(1), default=20_000, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(5),
    default=60,
    show_default=True,
    help="Seconds measured per step.",
)
@click.option("--cycle", type=click.FloatRange(5), default=60, show_default=True)
@DATA_DIR
@OUT
@click.option("--json", "as_json", is_flag=True)
def capacity(
    *,
    start: int,
    step: int,
    max_users: int,
    duration: float,
    cycle: float,
    data_dir: Path,
    out: Path,
    as_json: bool,
) -> None:
    """Add users step by step until the budget breaks; report the highest count that held.

    The budget: REST p95 < 100 ms and p99 < 250 ms, no errors, every user held, no reply lost
    or duplicated. Exit 0 when at least START users held, 1 otherwise.
    """
    from wingman.loadtest.runner import LoadPlan, run_load

    steps: list[dict[str, Any]] = []
    best = 0
    users = start
    while users <= max_users:
        progress(f"step: {users} users")
        plan = LoadPlan(
            users=users,
            duration=duration,
            data_dir=data_dir,
            ramp=min(60, users / 10),
            cycle_seconds=cycle,
            name="capacity",
        )
        try:
            result = asyncio.run(run_load(plan, progress))
        except (RuntimeError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_DOWN) from None
        steps.append(result)
        if not result["verdict"]["passed"]:
            progress("budget missed: " + "; ".join(result["verdict"]["failures"]))
            break
        best = users
        users += step
    summary = {
        "name": "capacity",
        "taken_at": steps[-1]["taken_at"],
        "host": steps[-1]["host"],
        "capacity": best,
        "steps": steps,
    }
    _finish(summary, out, as_json)
    if best < start:
        raise SystemExit(EXIT_DEGRADED)
