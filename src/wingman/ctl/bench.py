"""``wingmanctl bench``: the load profile against a running stack, and the capacity search."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
import msgspec

from wingman.ctl.output import EXIT_DEGRADED, EXIT_DOWN, emit_object, progress

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var"),
    show_default=True,
    help="The development stack's folder (`make run` uses var).",
)
GENERATORS = click.option(
    "--generators",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Generator processes the users are split between (about 1,000 users each).",
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

    written = write_results(result, out)
    if as_json:
        emit_object(result, as_json=True)
    else:
        click.echo(markdown(result, files=written[0].stem))
    progress("results written to " + ", ".join(map(str, written)))


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
@GENERATORS
@DATA_DIR
@OUT
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def load(
    *,
    users: int,
    generators: int,
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
    database. The users are split between GENERATORS processes, each pinned to a CPU of its
    own when there are enough; their latency histograms are merged exactly. The results carry
    the cost model `bench project` reads. Exit codes: 0 budget met, 1 budget missed, 2 no stack
    to run against.
    """
    from wingman.loadtest.runner import LoadPlan, run_load

    plan = LoadPlan(
        users=users,
        duration=duration,
        data_dir=data_dir,
        ramp=ramp,
        cycle_seconds=cycle,
        name=name,
        generators=min(generators, users),
    )
    try:
        result = asyncio.run(run_load(plan, progress))
    except (RuntimeError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_DOWN) from None
    for warning in result["generators"]["warnings"]:
        progress(f"warning: {warning}")
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
@GENERATORS
@DATA_DIR
@OUT
@click.option("--json", "as_json", is_flag=True)
def capacity(
    *,
    generators: int,
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
            generators=min(generators, users),
        )
        try:
            result = asyncio.run(run_load(plan, progress))
        except (RuntimeError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_DOWN) from None
        steps.append(result)
        for warning in result["generators"]["warnings"]:
            progress(f"warning: {warning}")
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


def _newest_with_model(folder: Path) -> Path | None:
    from wingman.loadtest.costmodel import model_of

    files = sorted(folder.glob("*.json"), key=lambda path: path.stat().st_mtime, reverse=True)
    for path in files:
        try:
            result = msgspec.json.decode(path.read_bytes())
        except msgspec.DecodeError:
            continue
        if isinstance(result, dict) and model_of(result):
            return path
    return None


@bench.command("project")
@click.option("--cores", type=click.IntRange(1, 1024), required=True, help="The host's cores.")
@click.option(
    "--ram", "ram_gb", type=click.FloatRange(1.5, 16_384), required=True, help="RAM in GB."
)
@click.option(
    "--from",
    "source",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A results file of `bench load` or `bench capacity` (default: the newest in --out).",
)
@click.option(
    "--with-generators",
    is_flag=True,
    help="Count the run's load generators in the whole host: to check a projection against "
    "the host it was measured on, whose cores they shared.",
)
@OUT
@click.option("--json", "as_json", is_flag=True, help="Print the projection as JSON.")
def project(
    *,
    cores: int,
    ram_gb: float,
    source: Path | None,
    with_generators: bool,
    out: Path,
    as_json: bool,
) -> None:
    """Project the users a host of CORES and RAM holds from a measured cost model.

    The cost model (CPU ms per user-minute of every component, measured by a `bench load` run
    or the step of `bench capacity` that held the capacity) is spread over the cores the
    tuning plan gives each component: multi-process workers and PostgreSQL on their cores at
    most 80 % busy, each single-threaded server (each Redis, a one-process queue) and each web
    process (one event loop that keeps the connections it accepted) on one core at most 60 %
    busy, and everything together on the host's cores at most 60 % busy (with
    --with-generators, the load generators too, as on the host the run was measured on).
    The component that saturates at the fewest users sets the projection. Exit 2 when no
    results file carries a cost model.
    """
    from dataclasses import asdict

    from wingman.loadtest.costmodel import generators_cost_of, model_of
    from wingman.loadtest.costmodel import project as project_host
    from wingman.loadtest.report import projection_lines

    path = source or _newest_with_model(out)
    model = None
    generators = 0.0
    if path is not None:
        try:
            result = msgspec.json.decode(path.read_bytes())
            model = model_of(result)
            generators = generators_cost_of(result) if with_generators else 0.0
        except (msgspec.DecodeError, AttributeError, TypeError, KeyError, ValueError):
            model = None
    if path is None or model is None:
        where = path if path is not None else f"{out}/*.json"
        click.echo(f"error: no cost model in {where} (run `wingmanctl bench load` first)", err=True)
        raise SystemExit(EXIT_DOWN)
    projection = project_host(
        model["cpu_ms_per_user_minute"],
        cores,
        ram_gb,
        model.get("idle_cores"),
        generators_cpu_ms=generators,
    )
    if as_json:
        emit_object(
            {"from": str(path), "cost_model": model, "projection": asdict(projection)},
            as_json=True,
        )
        return
    click.echo("\n".join(projection_lines(projection, str(path), model.get("cycle_s", 60.0))))


@bench.command("plot")
@click.argument("results", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def plot(results: Path) -> None:
    """Draw the picture of a `bench capacity` RESULTS file (JSON) as an SVG beside it.

    `bench capacity` draws its own; this draws it again, or for a file written before it did.
    Exit 2 when RESULTS is not the JSON of a capacity search.
    """
    from wingman.loadtest.plot import write_capacity_svg

    try:
        result = msgspec.json.decode(results.read_bytes())
        path = write_capacity_svg(result, results.with_suffix(".svg"))
    except (msgspec.DecodeError, KeyError, TypeError, IndexError, ValueError):
        click.echo(f"error: {results} is not the results file of `bench capacity`", err=True)
        raise SystemExit(EXIT_DOWN) from None
    progress(f"picture written to {path}")
