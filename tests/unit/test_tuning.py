"""The tuning plan: budgets that never overflow, on any host from 2 cores/2 GB to 128 cores/1 TB."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.config import Settings, SettingsError, load_settings
from wingman.server.open_files import RESERVED_DESCRIPTORS
from wingman.tuning.plan import (
    AI_MESSAGES_PER_USER_PER_SECOND,
    AI_REPLY_SECONDS,
    CONNECTIONS_PER_USER,
    MAINTENANCE_WORK_MEM_MAX_MB,
    MAX_CONNECTIONS_PER_WORKER,
    MIN_CONNECTIONS_PER_WORKER,
    POOL_BURST_FACTOR,
    USERS_PER_CORE,
    WEB_UNIT_OPEN_FILES,
    WORK_MEM_MIN_KB,
    HostFacts,
    TuningPlan,
    plan_for,
)
from wingman.tuning.render import (
    document_values,
    pg_size,
    settings_overrides,
    tuning_document,
    tuning_toml,
)
from wingman.tuning.rows import markdown_table, plan_rows

GIB = 1024
cores = st.integers(min_value=2, max_value=128)
ram_mb = st.integers(min_value=2 * GIB, max_value=1024 * GIB)
disks = st.sampled_from(["ssd", "hdd"])
hosts = st.builds(HostFacts, cores=cores, ram_mb=ram_mb, disk=disks)


@given(hosts)
def test_memory_adds_up_with_os_headroom(host: HostFacts) -> None:
    memory = plan_for(host).memory
    assert memory.os_headroom_mb.value >= host.ram_mb * 0.10
    assert memory.allocated_mb + memory.os_headroom_mb.value <= host.ram_mb
    for part in (memory.postgres_mb, memory.redis_mb, memory.web_mb, memory.workers_mb):
        assert part.value > 0


@given(hosts)
def test_pools_fit_in_max_connections_minus_reserve(host: HostFacts) -> None:
    plan = plan_for(host)
    app = plan.app
    processes = app.web_workers.value + sum(q.processes.value for q in app.queues.values())
    pools = app.pool_size.value * processes
    assert pools + app.connection_reserve.value <= plan.postgres.max_connections.value
    assert app.connection_reserve.value >= 3  # at least superuser_reserved_connections


@given(hosts)
def test_postgres_within_pgtune_bounds(host: HostFacts) -> None:
    pg = plan_for(host).postgres
    assert pg.work_mem_kb.value >= WORK_MEM_MIN_KB
    assert pg.maintenance_work_mem_mb.value <= MAINTENANCE_WORK_MEM_MAX_MB
    assert pg.shared_buffers_mb.value < pg.effective_cache_size_mb.value
    assert 1 <= pg.max_parallel_workers_per_gather.value <= min(4, host.cores)
    assert pg.max_worker_processes.value == pg.max_parallel_workers.value == host.cores


@given(hosts)
def test_processes_never_exceed_cores_or_limits(host: HostFacts) -> None:
    app = plan_for(host).app
    assert 1 <= app.web_workers.value <= host.cores
    for queue in app.queues.values():
        assert queue.processes.value >= 1
        assert 1 <= queue.concurrency.value <= 200


@given(cores, ram_mb, ram_mb, disks)
def test_more_ram_never_shrinks_memory_settings(
    cores: int, ram_a: int, ram_b: int, disk: str
) -> None:
    small, large = sorted((ram_a, ram_b))
    a = plan_for(HostFacts(cores=cores, ram_mb=small, disk=disk))  # type: ignore[arg-type]
    b = plan_for(HostFacts(cores=cores, ram_mb=large, disk=disk))  # type: ignore[arg-type]
    for field in ("shared_buffers_mb", "effective_cache_size_mb", "maintenance_work_mem_mb"):
        assert getattr(a.postgres, field).value <= getattr(b.postgres, field).value, field
    assert a.memory.postgres_mb.value <= b.memory.postgres_mb.value
    assert a.redis_queue.maxmemory_mb.value <= b.redis_queue.maxmemory_mb.value
    assert a.redis_cache.maxmemory_mb.value <= b.redis_cache.maxmemory_mb.value
    assert a.app.web_workers.value <= b.app.web_workers.value


@given(st.integers(min_value=2, max_value=127), st.integers(min_value=2, max_value=8))
def test_more_cores_never_shrink_workers_when_memory_is_plenty(cores: int, per_core: int) -> None:
    # 2 GiB per core and more: memory never binds (GitLab's rule applies below ~1.5 GB per core).
    ram = (cores + 1) * per_core * GIB
    a = plan_for(HostFacts(cores=cores, ram_mb=ram))
    b = plan_for(HostFacts(cores=cores + 1, ram_mb=ram))
    assert a.app.web_workers.value <= b.app.web_workers.value
    assert a.app.queues["ai"].processes.value <= b.app.queues["ai"].processes.value
    assert a.postgres.max_connections.value <= b.postgres.max_connections.value


@given(hosts)
def test_every_value_has_a_reason_and_tuning_toml_is_valid_settings(host: HostFacts) -> None:
    plan = plan_for(host)
    rows = plan_rows(plan)
    assert all(row.reason and row.value for row in rows)
    toml = tomllib.loads(tuning_toml(plan))
    assert toml == settings_overrides(plan)
    # Only keys Settings knows: strict decoding rejects anything else.
    settings = msgspec.convert(toml, Settings)
    assert settings.server.workers == plan.app.web_workers.value
    # The pool that runs is the pool the plan budgets against max_connections.
    assert settings.database.effective_pool_size == plan.app.pool_size.value


def test_reference_host_matches_the_design() -> None:
    plan = plan_for(HostFacts(cores=16, ram_mb=32 * GIB, disk="ssd"))
    assert plan.memory.postgres_mb.value == 16 * GIB
    assert plan.postgres.shared_buffers_mb.value == 4 * GIB
    assert plan.postgres.effective_cache_size_mb.value == 12 * GIB
    assert plan.postgres.maintenance_work_mem_mb.value == 1 * GIB
    assert plan.postgres.random_page_cost.value == 1.1
    assert plan.postgres.effective_io_concurrency.value == 200
    assert plan.postgres.max_parallel_workers_per_gather.value == 4
    assert plan.app.web_workers.value == 16
    # Active connections near 2-4x cores: each pool's share, the other half is for bursts.
    steady = plan.app.pool_size.value // POOL_BURST_FACTOR * plan.app.processes
    assert 2 * 16 <= steady <= 4 * 16
    # Zulip's co-located shares as a cross-check: shared_buffers RAM/8, cache ~RAM*10/32.
    assert plan.postgres.shared_buffers_mb.value == 32 * GIB // 8
    assert abs(plan.postgres.effective_cache_size_mb.value - 32 * GIB * 10 // 32) < 3 * GIB


def test_hdd_changes_planner_costs() -> None:
    hdd = plan_for(HostFacts(cores=4, ram_mb=8 * GIB, disk="hdd")).postgres
    assert hdd.random_page_cost.value == 4.0
    assert hdd.effective_io_concurrency.value == 2


def test_memory_bound_host_gets_fewer_web_workers() -> None:
    plan = plan_for(HostFacts(cores=16, ram_mb=4 * GIB))
    assert plan.app.web_workers.value < 16
    assert "GitLab" in plan.app.web_workers.reason


@given(st.integers(min_value=1, max_value=4 * 1024 * 1024))
def test_pg_size_spells_sizes_like_show(kb: int) -> None:
    text = pg_size(kb)
    number, unit = int(text[:-2]), text[-2:]
    assert number * {"kB": 1, "MB": 1024, "GB": 1024 * 1024}[unit] == kb


def test_docs_table_is_generated_from_the_code() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "tuning.md").read_text()
    assert markdown_table() in doc


def test_plan_is_plain_data() -> None:
    plan = plan_for(HostFacts(cores=8, ram_mb=16 * GIB))
    again = msgspec.json.decode(msgspec.json.encode(plan), type=TuningPlan)
    assert again == plan


def test_written_tuning_toml_loads_as_a_settings_layer(tmp_path: Path) -> None:
    plan = plan_for(HostFacts(cores=16, ram_mb=32 * GIB))
    (tmp_path / "tuning.toml").write_text(tuning_toml(plan))
    (tmp_path / "wingman.toml").write_text("")
    environ = {
        "WINGMAN_CONFIG": str(tmp_path / "wingman.toml"),
        "WINGMAN_TUNING": str(tmp_path / "tuning.toml"),
    }
    settings = load_settings(environ)
    assert settings.server.workers == 16
    assert settings.worker.queue("ai").processes == plan.app.queues["ai"].processes.value
    # The plan sets processes and concurrency; the queue's other defaults stay.
    assert settings.worker.queue("ai").timeout == 120

    (tmp_path / "tuning.toml").write_text("[worker.queues.ai]\nprocesses = 0\n")
    with pytest.raises(SettingsError, match=r"worker\.queues\.ai\.processes"):
        load_settings(environ)


@given(hosts)
def test_web_workers_hold_every_planned_client(host: HostFacts) -> None:
    """No connection wall below the plan: the workers together hold every planned user's
    keep-alive connection and WebSocket, unless a memory-bound host reached the unit's limit."""
    app = plan_for(host).app
    per_worker = app.connections_per_worker.value
    assert MIN_CONNECTIONS_PER_WORKER <= per_worker <= MAX_CONNECTIONS_PER_WORKER
    planned = math.ceil(host.cores * USERS_PER_CORE) * CONNECTIONS_PER_USER
    assert per_worker * app.web_workers.value >= planned or per_worker == MAX_CONNECTIONS_PER_WORKER
    assert 128 <= app.backlog.value <= 4096


@given(st.integers(min_value=2, max_value=127), st.integers(min_value=2, max_value=8))
def test_ai_slots_stay_half_free_at_the_planned_users(cores: int, per_core: int) -> None:
    """The ai queue is no wall at the planned load: slots for twice the replies in flight
    (Little's law), when memory allows the processes. With slots for the mean alone, 1,350
    users on 2 cores waited seconds for a reply's first words."""
    ai = plan_for(HostFacts(cores=cores, ram_mb=cores * per_core * GIB)).app.queues["ai"]
    in_flight = cores * USERS_PER_CORE * AI_MESSAGES_PER_USER_PER_SECOND * AI_REPLY_SECONDS
    assert ai.processes.value * ai.concurrency.value >= 2 * in_flight


def test_connection_cap_fits_the_web_units_open_file_limit() -> None:
    unit = (Path(__file__).parents[2] / "systemd" / "wingman-web.service").read_text()
    limits = [line.split("=")[1] for line in unit.splitlines() if line.startswith("LimitNOFILE=")]
    assert limits == [str(WEB_UNIT_OPEN_FILES)]
    assert MAX_CONNECTIONS_PER_WORKER + RESERVED_DESCRIPTORS <= WEB_UNIT_OPEN_FILES


@given(hosts, st.lists(st.sampled_from(["127.0.0.1", "::1", "10.0.0.0/8"]), max_size=3))
def test_tuning_toml_is_its_document_encoded(host: HostFacts, proxies: list[str]) -> None:
    plan = plan_for(host)
    text = tuning_toml(plan, trusted_proxies=proxies)
    document = tuning_document(plan, trusted_proxies=proxies)
    assert tomllib.loads(text) == document_values(document)
    # Every value is preceded by its reason.
    assert f"# {document['database']['pool_size'].reason}\npool_size = " in text
