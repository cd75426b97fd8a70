"""The cost model of one load run, and what it projects for another host. No I/O.

From one run (a ``bench load`` run or one capacity step): the CPU each component spent per user
per minute (milliseconds of CPU: one core gives 60,000 a minute) and the Redis commands each
server ran per user per minute, both beyond what the stack spends with no user at all (SAQ's
polling, heartbeats, cron: measured for a few seconds before the users arrive and kept apart,
so that a small run does not charge it to its few users). The projection turns that into users
per component on a host of N cores and R GB: each component may use the cores the tuning plan
gives it (DESIGN section 9) up to a ceiling of busyness, less its idle load, and the component
that reaches its ceiling at the fewest users is the one that saturates first. All components
share the host, so the whole host is a row as well.

Ceilings: a component that runs in a single thread (each Redis server, a queue with one worker
process) counts as one core at most 60 % busy: past that, a single queue's waiting time grows
faster than its work (M/M/1: at 60 % a request waits 1.5 times its own service time). Each web
process is such a queue too: a client's connection is handed to one process when it connects
and stays there (keep-alive, WebSocket), so a busy event loop cannot pass work to an idle one;
the web gets one core per process the plan runs, each at most 60 % busy (a 2-core capacity run
with one web process broke its latency budget at 54-63 % of that process's core). Components
whose work goes to whichever process is free (PostgreSQL's backends, a queue's several worker
processes taking jobs off one list) get the cores the plan gives them, at most 80 % busy.
The whole host, every component together, at most 60 % busy: measured, not derived. On 2-core
machines the latency budget broke with the host at 55-60 % busy by the per-user costs of the
last step that held (an M/M/2 queue would allow about 78 %), on a stack with one web process
and on the tuned one with two, and at the step that broke every process (the load generator's
too) spent 10-37 % more CPU per user than at the step before. On a bigger host it is cautious.
Memory is not projected: the tuning plan already sizes processes to the RAM it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from wingman.tuning import HostFacts, TuningPlan, plan_for

SINGLE_THREAD_BUSY = 0.6
MULTI_PROCESS_BUSY = 0.8
HOST_BUSY = 0.6
CPU_MS_PER_CORE_MINUTE = 60_000.0
# The cost model keeps 3 decimals: a component below this spent no measurable CPU.
MEASURABLE_CPU_MS = 0.001


@dataclass(frozen=True)
class Usage:
    """What the server spent over ``seconds``: CPU seconds per component, Redis calls per
    server and command."""

    cpu_seconds: dict[str, float]
    redis_calls: dict[str, dict[str, int]]
    seconds: float


def _per_minute(count: float, seconds: float) -> float:
    return count * 60 / seconds if seconds > 0 else 0.0


def cost_model(
    loaded: Usage, idle: Usage, users: int, cycle_seconds: float
) -> dict[str, Any] | None:
    """CPU ms and Redis commands per user-minute per component, beyond what the idle stack
    spends (kept apart as ``idle_cores`` and idle commands per minute); None when no user was
    held. The users are the run's: one profile cycle every ``cycle_seconds``."""
    if users <= 0 or loaded.seconds <= 0:
        return None
    user_minutes = users * loaded.seconds / 60
    idle_cores = {
        name: used / idle.seconds if idle.seconds > 0 else 0.0
        for name, used in idle.cpu_seconds.items()
    }
    cpu = {
        name: max(0.0, used - idle_cores.get(name, 0.0) * loaded.seconds)
        for name, used in loaded.cpu_seconds.items()
    }
    redis = {}
    for server, calls in loaded.redis_calls.items():
        idle_calls = idle.redis_calls.get(server, {})
        net = {
            command: max(
                0.0,
                count - _per_minute(idle_calls.get(command, 0), idle.seconds) * loaded.seconds / 60,
            )
            for command, count in calls.items()
        }
        redis[server] = {
            "total": round(sum(net.values()) / user_minutes, 2),
            "idle_per_minute": round(_per_minute(sum(idle_calls.values()), idle.seconds), 1),
            "by_command": {
                command: round(count / user_minutes, 3)
                for command, count in sorted(net.items(), key=lambda kv: -kv[1])
                if count > 0
            },
        }
    return {
        "users": users,
        "cycle_s": cycle_seconds,
        "seconds": round(loaded.seconds, 1),
        "idle_seconds": round(idle.seconds, 1),
        "cpu_ms_per_user_minute": {
            name: round(1000 * used / user_minutes, 3) for name, used in cpu.items()
        },
        "idle_cores": {name: round(value, 4) for name, value in idle_cores.items()},
        "redis_commands_per_user_minute": redis,
    }


@dataclass(frozen=True)
class ComponentCapacity:
    component: str
    cpu_ms_per_user_minute: float
    # Cores busy with no user (polling, heartbeats), taken off the share before users.
    idle_cores: float
    cores: float
    busy: float
    # None when the component spent no measurable CPU in the run (it sets no limit).
    users: int | None
    basis: str


@dataclass(frozen=True)
class Projection:
    cores: int
    ram_gb: float
    rows: list[ComponentCapacity]
    host: ComponentCapacity
    users: int | None
    first: str | None


def _users(cost: float, idle: float, cores: float, busy: float) -> int | None:
    """Whole users whose CPU fits what the share leaves beyond the idle load."""
    if cost < MEASURABLE_CPU_MS:
        return None
    spare = max(0.0, cores * busy - idle)
    return math.floor(spare * CPU_MS_PER_CORE_MINUTE / cost)


def _share(component: str, plan: TuningPlan, cores: int) -> tuple[float, float, str]:
    """(cores the component may use, busy ceiling, why) on the planned host."""

    def processes(count: int, what: str) -> tuple[float, float, str]:
        if count <= 1:
            return 1.0, SINGLE_THREAD_BUSY, f"1 {what}: one core"
        used = min(count, cores)
        return float(used), MULTI_PROCESS_BUSY, f"{count} {what}es (tuning plan): {used} cores"

    if component == "web":
        count = plan.app.web_workers.value
        used = min(count, cores)
        return (
            float(used),
            SINGLE_THREAD_BUSY,
            f"{count} web process{'es' if count > 1 else ''} (tuning plan), one event loop each: "
            f"{used} core{'s' if used > 1 else ''}",
        )
    if component.startswith("worker-"):
        queue = plan.app.queues.get(component.removeprefix("worker-"))
        return processes(queue.processes.value if queue else 1, "worker process")
    if component == "postgres":
        if cores == 1:
            return 1.0, SINGLE_THREAD_BUSY, "one core"
        return float(cores), MULTI_PROCESS_BUSY, f"backends on all {cores} cores"
    if component.startswith("redis"):
        return 1.0, SINGLE_THREAD_BUSY, "single-threaded server: one core"
    return 1.0, SINGLE_THREAD_BUSY, "one process: one core"


def project(
    cpu_ms_per_user_minute: dict[str, float],
    cores: int,
    ram_gb: float,
    idle_cores: dict[str, float] | None = None,
    *,
    generators_cpu_ms: float = 0.0,
) -> Projection:
    """Users each component can hold on a host of ``cores`` and ``ram_gb``, and the first to
    saturate (the whole host counts as a component). ``idle_cores`` (what each component keeps
    busy with no user) is taken off its share first. ``generators_cpu_ms``: the load
    generators' CPU per user-minute when they share the host (a projection checked against the
    host it was measured on), counted in the whole-host row only."""
    plan = plan_for(HostFacts(cores=cores, ram_mb=int(ram_gb * 1024)))
    idle = idle_cores or {}
    rows = []
    for component, cost in sorted(cpu_ms_per_user_minute.items()):
        share, busy, basis = _share(component, plan, cores)
        fixed = max(0.0, idle.get(component, 0.0))
        users = _users(cost, fixed, share, busy)
        rows.append(ComponentCapacity(component, cost, fixed, share, busy, users, basis))
    total = sum(max(0.0, cost) for cost in cpu_ms_per_user_minute.values())
    total += max(0.0, generators_cpu_ms)
    total_idle = sum(max(0.0, idle.get(name, 0.0)) for name in cpu_ms_per_user_minute)
    together = (
        "every component and the load generators" if generators_cpu_ms > 0 else "every component"
    )
    host = ComponentCapacity(
        "whole host",
        total,
        total_idle,
        float(cores),
        HOST_BUSY,
        _users(total, total_idle, cores, HOST_BUSY),
        f"{together} together on {cores} cores",
    )
    limited = [row for row in [*rows, host] if row.users is not None]
    first = min(limited, key=lambda row: row.users or 0, default=None)
    return Projection(
        cores=cores,
        ram_gb=ram_gb,
        rows=rows,
        host=host,
        users=first.users if first else None,
        first=first.component if first else None,
    )


def _run_of(result: dict[str, Any]) -> dict[str, Any] | None:
    """The run a results file's cost model comes from: a load run itself, or a capacity
    search's step that held the capacity (else its last step that has a cost model)."""
    if "steps" not in result:
        return result if result.get("cost_model") else None
    steps = [step for step in result["steps"] if step.get("cost_model")]
    held = [step for step in steps if step["users"] == result.get("capacity")]
    chosen = held or steps[-1:]
    return chosen[0] if chosen else None


def model_of(result: dict[str, Any]) -> dict[str, Any] | None:
    """The cost model of a results file (see :func:`_run_of` for which run's)."""
    run = _run_of(result)
    model: dict[str, Any] | None = run["cost_model"] if run else None
    return model


def generators_cost_of(result: dict[str, Any]) -> float:
    """The load generators' CPU ms per user-minute in the run :func:`model_of` reads (0 when
    the file does not say)."""
    run = _run_of(result)
    generators = (run or {}).get("generators") or {}
    return float(generators.get("cpu_ms_per_user_minute") or 0.0)
