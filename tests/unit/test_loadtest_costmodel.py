"""The cost model of a run and the projection for another host: pure arithmetic."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from wingman.loadtest.costmodel import (
    CPU_MS_PER_CORE_MINUTE,
    MEASURABLE_CPU_MS,
    MULTI_PROCESS_BUSY,
    SINGLE_THREAD_BUSY,
    Usage,
    cost_model,
    generators_cost_of,
    model_of,
    project,
)
from wingman.loadtest.fleet import pick_cpus, split_users
from wingman.tuning import HostFacts, plan_for

COMPONENTS = (
    "web",
    "worker-ai",
    "worker-default",
    "worker-heavy",
    "postgres",
    "redis-queue",
    "redis-cache",
)
costs = st.dictionaries(
    st.sampled_from(COMPONENTS), st.floats(0.0, 10_000.0, allow_nan=False), min_size=1
)
idle = st.dictionaries(st.sampled_from(COMPONENTS), st.floats(0.0, 4.0, allow_nan=False))
hosts = st.tuples(st.integers(1, 128), st.integers(2, 1024))


@given(costs, idle, hosts)
def test_each_component_holds_what_its_cores_allow_at_its_ceiling(
    cost: dict[str, float], idle_cores: dict[str, float], host: tuple[int, int]
) -> None:
    cores, ram = host
    projection = project(cost, cores, ram, idle_cores)
    for row in [*projection.rows, projection.host]:
        if row.cpu_ms_per_user_minute < MEASURABLE_CPU_MS:
            assert row.users is None
            continue
        assert row.users is not None
        # What the share leaves once the idle load (polling, heartbeats) is served.
        budget = max(0.0, row.cores * row.busy - row.idle_cores) * CPU_MS_PER_CORE_MINUTE
        # The largest whole number of users whose CPU fits the component's share.
        assert row.users * row.cpu_ms_per_user_minute <= budget * (1 + 1e-9)
        assert (row.users + 1) * row.cpu_ms_per_user_minute > budget * (1 - 1e-9)
        assert row.cores <= cores or row.cores == 1
    limited = [r.users for r in [*projection.rows, projection.host] if r.users is not None]
    assert projection.users == (min(limited) if limited else None)
    if projection.users is not None:
        first = next(
            r for r in [*projection.rows, projection.host] if r.component == projection.first
        )
        assert first.users == projection.users


@given(costs, hosts)
def test_single_threaded_servers_and_web_processes_get_a_core_each_at_most_sixty_percent_busy(
    cost: dict[str, float], host: tuple[int, int]
) -> None:
    cores, ram = host
    plan = plan_for(HostFacts(cores=cores, ram_mb=ram * 1024))
    rows = {row.component: row for row in project(cost, cores, ram).rows}
    for name in ("redis-queue", "redis-cache", "worker-default", "worker-heavy"):
        if name in rows:
            assert (rows[name].cores, rows[name].busy) == (1.0, SINGLE_THREAD_BUSY)
    if "web" in rows:
        # Each web process is one event loop keeping the connections it accepted.
        workers = min(plan.app.web_workers.value, cores)
        assert (rows["web"].cores, rows["web"].busy) == (workers, SINGLE_THREAD_BUSY)
    if "worker-ai" in rows and plan.app.queues["ai"].processes.value > 1:
        # Several worker processes take jobs off one list: whichever is free takes the next.
        assert rows["worker-ai"].busy == MULTI_PROCESS_BUSY


@given(costs, idle, st.integers(1, 64), st.floats(1.0, 4.0))
def test_more_cost_or_more_idle_load_never_projects_more_users(
    cost: dict[str, float], idle_cores: dict[str, float], cores: int, factor: float
) -> None:
    cheap = project(cost, cores, 4 * cores)
    dear = project({name: value * factor for name, value in cost.items()}, cores, 4 * cores)
    busy = project(cost, cores, 4 * cores, idle_cores)
    if cheap.users is not None:
        assert dear.users is not None
        assert busy.users is not None
        assert dear.users <= cheap.users
        assert busy.users <= cheap.users


def test_the_first_to_saturate_on_the_reference_host() -> None:
    # A web tier that costs 60 ms of CPU per user-minute gets 16 processes at 60 %: 9,600
    # users; a Redis at 6 ms on one core at 60 %: 6,000 users, so Redis saturates first.
    projection = project({"web": 60.0, "redis-queue": 6.0}, cores=16, ram_gb=32)
    rows = {row.component: row for row in projection.rows}
    assert rows["web"].users == 9_600
    assert rows["redis-queue"].users == 6_000
    # The whole host at 60 %: 16 x 0.6 x 60,000 over 66 ms.
    assert projection.host.users == math.floor(16 * 0.6 * 60_000 / 66)
    assert (projection.first, projection.users) == ("redis-queue", 6_000)
    # A Redis kept 0.1 of a core busy by polling has 0.5 of a core left for users: 5,000.
    polled = project({"web": 60.0, "redis-queue": 6.0}, 16, 32, {"redis-queue": 0.1})
    assert (polled.first, polled.users) == ("redis-queue", 5_000)


def test_the_cost_model_is_per_user_minute_beyond_the_idle_stack() -> None:
    idle = Usage({"web": 0.5, "postgres": 0.0}, {"redis-queue": {"brpoplpush": 50}}, 10.0)
    loaded = Usage(
        {"web": 36.0, "postgres": 6.0},
        {"redis-queue": {"evalsha": 600, "get": 300, "brpoplpush": 600}},
        120.0,
    )
    model = cost_model(loaded, idle, 100, 60.0)
    assert model is not None
    # Idle, web kept 0.05 of a core busy: 6 of its 36 CPU seconds over 120 s. The other 30
    # over 100 users x 2 minutes: 150 ms per user-minute.
    assert model["idle_cores"] == {"web": 0.05, "postgres": 0.0}
    assert model["cpu_ms_per_user_minute"] == {"web": 150.0, "postgres": 30.0}
    # 300 polls a minute idle: 600 in 2 minutes are not the users'.
    assert model["redis_commands_per_user_minute"]["redis-queue"] == {
        "total": 4.5,
        "idle_per_minute": 300.0,
        "by_command": {"evalsha": 3.0, "get": 1.5},
    }
    assert model["cycle_s"] == 60.0
    assert cost_model(loaded, idle, 0, 60.0) is None


def test_a_capacity_search_is_modelled_at_the_step_that_held() -> None:
    steps = [{"users": n, "cost_model": {"users": n}} for n in (100, 200, 300)]
    assert model_of({"capacity": 200, "steps": steps}) == {"users": 200}
    assert model_of({"capacity": 0, "steps": steps}) == {"users": 300}
    assert model_of({"cost_model": {"users": 5}}) == {"users": 5}
    assert model_of({"name": "old run"}) is None


def test_the_generators_of_the_modelled_step_count_in_the_whole_host_only() -> None:
    steps = [
        {"users": n, "cost_model": {"users": n}, "generators": {"cpu_ms_per_user_minute": n / 10}}
        for n in (100, 200)
    ]
    assert generators_cost_of({"capacity": 100, "steps": steps}) == 10.0
    assert generators_cost_of({"cost_model": {"users": 5}}) == 0.0
    alone = project({"web": 30.0, "postgres": 10.0}, cores=2, ram_gb=8)
    shared = project({"web": 30.0, "postgres": 10.0}, 2, 8, generators_cpu_ms=20.0)
    # The host's 1.2 busy cores (60 % of 2): 72,000 ms a minute over 40 ms per user, or over 60
    # with the generators; the web's own row (2 processes at 60 %: 72,000 / 30) does not change.
    assert (alone.host.users, shared.host.users) == (1_800, 1_200)
    assert [row.users for row in alone.rows] == [row.users for row in shared.rows]
    assert "load generators" in shared.host.basis
    assert (shared.first, shared.users) == ("whole host", 1_200)


@given(st.integers(1, 20_000), st.integers(1, 64))
def test_users_are_split_evenly_and_completely(users: int, generators: int) -> None:
    shares = split_users(users, generators)
    assert len(shares) == generators
    assert sum(count for _, count in shares) == users
    assert max(c for _, c in shares) - min(c for _, c in shares) <= 1
    # Consecutive index ranges: every simulated user (and e-mail address) is distinct.
    assert [first for first, _ in shares] == [
        sum(c for _, c in shares[:n]) for n in range(generators)
    ]


def test_generators_are_pinned_to_distinct_cpus_only_when_there_are_enough() -> None:
    assert pick_cpus(2, {0, 1, 2, 3}) == [3, 2]
    assert pick_cpus(4, {0, 1, 2, 3}) == [3, 2, 1, 0]
    assert pick_cpus(3, {0, 1}) is None
