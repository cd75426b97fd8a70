"""The tuning plan: host facts and role in, every tuned value (with the reason for it) out.

A pure function: no file, no process, no network. Renderers (:mod:`wingman.tuning.render`) turn
the plan into config files; layouts (``wingman.ops.tune_*``) say where those files go.

The formulas are fixed in DESIGN section 9 and explained, with their sources, in docs/tuning.md:

- PostgreSQL gets a memory budget of about half of RAM, and PGTune's web-profile formulas
  (le0pard/pgtune) run on that budget rather than on all of RAM. Zulip gives a co-located
  PostgreSQL the same half (shared_buffers RAM/8, effective_cache_size about RAM/3), which this plan
  matches as a cross-check.
- Redis gets a slice of RAM per role; the queue role is counted twice because an AOF rewrite forks
  and copy-on-write can, in the worst case, duplicate the dataset.
- Web workers are one per core unless memory runs short (GitLab's Puma rule: when RAM per core is
  low, memory, not cores, sets the count).
- Database pools are small: all processes together keep about 3 connections per core busy
  (PostgreSQL wiki and HikariCP: (cores x 2) + spindles; small pools beat big ones). Each process
  runs one fixed pool (SQLAlchemy's pool_size, no overflow) of twice its share, so a burst finds
  its connections already open; every pool, summed, plus an admin reserve, fits in
  max_connections.
- Whatever is allocated leaves at least 10 % of RAM to the OS (page cache, sshd, journald).

Memory is counted in MiB (``_mb``) except ``work_mem`` in KiB, as PostgreSQL and PGTune do.
"""

from __future__ import annotations

import math
from typing import Generic, Literal, TypeVar

import msgspec

from wingman.config import NodeRole
from wingman.server.open_files import RESERVED_DESCRIPTORS

T = TypeVar("T")
DiskKind = Literal["ssd", "hdd"]

# -- sizes the design leaves open, each with why ------------------------------------------------

# The OS keeps at least this share of RAM (DESIGN section 9: >= 10 % headroom).
OS_HEADROOM_FRACTION = 0.10
# PostgreSQL's share of RAM when it shares the host with the app (DESIGN section 9, Zulip's
# co-located PostgreSQL gets the same half).
POSTGRES_RAM_FRACTION = 0.5
# Resident memory of one Granian worker running the app: 110 MiB measured right after start-up
# (Python, Litestar, SQLAlchemy, redis, msgspec imported, app built); the rest is room for a few
# hundred WebSockets' buffers, per-process caches and allocator fragmentation under load.
WEB_PROCESS_RSS_MB = 256
# Resident memory of one SAQ worker process: the same imports without the web stack's per-request
# and per-socket buffers; in-flight jobs are coroutines holding an HTTP stream each.
WORKER_PROCESS_RSS_MB = 192
# Redis slices of RAM. The queue role holds jobs, rate-limit counters and a bounded realtime
# history: small per user (7,000 users need tens of MiB), so RAM/32 is generous and a full queue
# fails loudly (noeviction). The cache role is worth more memory (hit ratio) and evicts (LRU).
REDIS_QUEUE_RAM_DIVISOR = 32
REDIS_CACHE_RAM_DIVISOR = 16
REDIS_MIN_MB = 64
REDIS_QUEUE_MAX_MB = 4 * 1024
REDIS_CACHE_MAX_MB = 8 * 1024
# The AOF rewrite forks; copy-on-write may touch every page in the worst case (Redis
# administration docs), so the queue role is counted at twice its maxmemory.
REDIS_QUEUE_FORK_FACTOR = 2

# Load model (DESIGN section 10): the goal is 10,000 active users on 16 cores, each sending one
# message a minute whose AI reply streams for about 2 s. By Little's law the replies in flight
# are users x (1/60 s) x 2 s.
USERS_PER_CORE = 10_000 / 16
AI_MESSAGES_PER_USER_PER_SECOND = 1 / 60
AI_REPLY_SECONDS = 2.0
# The ai queue is I/O bound: a job is a coroutine awaiting the provider's stream. One process
# comfortably drives about 100 of them (publishing coalesced deltas is the CPU cost); more
# processes spread that CPU over cores. Above 200 a single event loop's latency suffers.
AI_CONCURRENCY_PER_PROCESS = 100
AI_MAX_CONCURRENCY_PER_PROCESS = 200
# Slots for twice the replies in flight at the planned users. Sized at the mean itself, the
# queue runs full at the planned load and any burst waits: on 2 cores (42 slots) 1,350 users
# waited 2.3-2.7 s for a reply's first words, where 50 slots gave 88 ms. At half busy an
# M/M/c queue of this size hardly ever waits, and hosts that serve more users per core than
# planned (the aim is 12,000 on 16 cores, 1.2x the plan) still find a free slot. A slot costs
# a coroutine; the worker's CPU is what bounds it, and capacity runs measure that.
AI_SLOT_HEADROOM = 2
# OTP delivery and webhooks: short network calls, a handful at a time.
DEFAULT_QUEUE_CONCURRENCY = 10
# Exports, imports and purges are heavy on disk and CPU: 1, or 2 on hosts with 8+ cores
# (DESIGN section 2: concurrency 1-2).
HEAVY_QUEUE_CONCURRENCY_SMALL = 1
HEAVY_QUEUE_CONCURRENCY_LARGE = 2

# Client connections (DESIGN section 9): every active user holds a keep-alive connection and a
# WebSocket. A web worker holds at most server.connections_per_worker (Granian's backpressure);
# past it new clients wait in the kernel's accept queue, unanswered. Idle connections are cheap (a
# Tokio task and its buffers until a request arrives), so the cap is set well above the planned
# users: reconnect storms after a restart, and Granian's workers racing on one listening socket,
# which spreads clients unevenly over workers.
CONNECTIONS_PER_USER = 2
CONNECTION_HEADROOM = 4
MIN_CONNECTIONS_PER_WORKER = 4096
# systemd/wingman-web.service's LimitNOFILE, less what a worker needs besides clients.
WEB_UNIT_OPEN_FILES = 65536
MAX_CONNECTIONS_PER_WORKER = WEB_UNIT_OPEN_FILES - RESERVED_DESCRIPTORS
# The accept queue only absorbs connect bursts; Linux caps it at net.core.somaxconn (4096 by
# default since 5.4), so asking for more buys nothing without a sysctl the appliance cannot set
# inside a container.
LISTEN_BACKLOG = 4096

# Connections: about 3 busy connections per core (DESIGN: 2-4x cores; PostgreSQL wiki / HikariCP
# (cores x 2) + spindles). Pools never drop below 2 so one slow query does not block a process.
ACTIVE_CONNECTIONS_PER_CORE = 3
MIN_POOL_SHARE = 2
MAX_POOL_SHARE = 10
# A process's pool holds twice its share of the busy connections: bursts use the second half.
# The pool is fixed (SQLAlchemy's pool_size, max_overflow 0): a connection opened stays open until
# pool_recycle, since overflow connections would close at check-in and reopen (a backend fork and
# a SCRAM exchange each) as load swings (server/database.py).
POOL_BURST_FACTOR = 2
# superuser_reserved_connections (3) plus wingmanctl, migrations, backups and monitoring.
ADMIN_CONNECTION_RESERVE = 10
# PostgreSQL's own default; fewer buys nothing on any host this runs on.
MIN_MAX_CONNECTIONS = 100
# A data node's max_connections holds the pools of this many app nodes of its own size unless
# told otherwise (`wingmanctl tune --app-nodes`); a pooler in front changes the sum.
DEFAULT_APP_NODES = 2

# Below this the minimum app, Redis and the OS leave PostgreSQL too little (the appliance needs
# 2 GB; a "2 GB" VM reports a little less).
MIN_RAM_MB = 1536

# PGTune web profile and DESIGN section 9.
WORK_MEM_MIN_KB = 4 * 1024
MAINTENANCE_WORK_MEM_MAX_MB = 2 * 1024
WAL_BUFFERS_MB = 16
MIN_WAL_SIZE_MB = 1024
MAX_WAL_SIZE_MB = 4 * 1024
CHECKPOINT_COMPLETION_TARGET = 0.9
MAX_PARALLEL_PER_GATHER = 4


class Tuned(msgspec.Struct, Generic[T], frozen=True):
    """One tuned value and why it is what it is."""

    value: T
    reason: str


class HostFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the plan is computed from: detected on the host or given on the command line."""

    cores: int
    ram_mb: int
    disk: DiskKind = "ssd"

    def __post_init__(self) -> None:
        if self.cores < 1:
            raise ValueError("cores must be at least 1")
        if self.ram_mb < MIN_RAM_MB:
            raise ValueError(f"at least {MIN_RAM_MB} MiB of RAM is needed")


class MemoryPlan(msgspec.Struct, frozen=True, kw_only=True):
    """How RAM is shared out; the parts plus the OS headroom never exceed the total."""

    total_mb: Tuned[int]
    os_headroom_mb: Tuned[int]
    postgres_mb: Tuned[int]
    redis_mb: Tuned[int]
    web_mb: Tuned[int]
    workers_mb: Tuned[int]

    @property
    def allocated_mb(self) -> int:
        return (
            self.postgres_mb.value + self.redis_mb.value + self.web_mb.value + self.workers_mb.value
        )


class PostgresPlan(msgspec.Struct, frozen=True, kw_only=True):
    max_connections: Tuned[int]
    shared_buffers_mb: Tuned[int]
    effective_cache_size_mb: Tuned[int]
    work_mem_kb: Tuned[int]
    maintenance_work_mem_mb: Tuned[int]
    wal_buffers_mb: Tuned[int]
    min_wal_size_mb: Tuned[int]
    max_wal_size_mb: Tuned[int]
    checkpoint_completion_target: Tuned[float]
    random_page_cost: Tuned[float]
    effective_io_concurrency: Tuned[int]
    max_worker_processes: Tuned[int]
    max_parallel_workers: Tuned[int]
    max_parallel_workers_per_gather: Tuned[int]
    max_parallel_maintenance_workers: Tuned[int]


class RedisPlan(msgspec.Struct, frozen=True, kw_only=True):
    maxmemory_mb: Tuned[int]
    maxmemory_policy: Tuned[str]
    persistence: Tuned[str]


class QueuePlan(msgspec.Struct, frozen=True, kw_only=True):
    processes: Tuned[int]
    concurrency: Tuned[int]


class AppPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Web workers, SAQ workers and the database pool every one of those processes opens."""

    web_workers: Tuned[int]
    connections_per_worker: Tuned[int]
    backlog: Tuned[int]
    queues: dict[str, QueuePlan]
    # Connections each process's pool may hold open: SQLAlchemy's pool_size, no overflow.
    pool_size: Tuned[int]
    connection_reserve: Tuned[int]

    @property
    def processes(self) -> int:
        """Processes that each open a database pool: web workers and every queue's workers."""
        return self.web_workers.value + sum(q.processes.value for q in self.queues.values())

    @property
    def peak_connections(self) -> int:
        """Connections all pools together can open: pool_size x processes."""
        return self.pool_size.value * self.processes


class TuningPlan(msgspec.Struct, frozen=True, kw_only=True):
    host: HostFacts
    memory: MemoryPlan
    postgres: PostgresPlan
    redis_queue: RedisPlan
    redis_cache: RedisPlan
    # On a data node: the pools of one app node of this size (what max_connections serves).
    app: AppPlan
    # node.role the plan is for: which parts of it run on this host (docs/scale-out.md).
    role: NodeRole = "all-in-one"
    app_nodes: int = 1

    @property
    def runs_data(self) -> bool:
        """PostgreSQL and both Redis roles run here."""
        return self.role != "app"

    @property
    def runs_app(self) -> bool:
        """Web and workers run here."""
        return self.role != "data"


def human_mb(mb: int) -> str:
    """A size for people: GiB with one decimal from 1 GiB on, else MiB."""
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb} MiB"


# -- the plan ---------------------------------------------------------------------------------


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _redis_plans(ram_mb: int) -> tuple[RedisPlan, RedisPlan]:
    queue_mb = _clamp(ram_mb // REDIS_QUEUE_RAM_DIVISOR, REDIS_MIN_MB, REDIS_QUEUE_MAX_MB)
    cache_mb = _clamp(ram_mb // REDIS_CACHE_RAM_DIVISOR, REDIS_MIN_MB, REDIS_CACHE_MAX_MB)
    queue = RedisPlan(
        maxmemory_mb=Tuned(
            queue_mb,
            f"RAM/{REDIS_QUEUE_RAM_DIVISOR} within {REDIS_MIN_MB} MiB..{REDIS_QUEUE_MAX_MB} MiB: "
            "jobs, rate limits and realtime history are small per user",
        ),
        maxmemory_policy=Tuned("noeviction", "a full queue fails loudly, never drops a job"),
        persistence=Tuned("aof everysec", "a restart loses at most one second of jobs"),
    )
    cache = RedisPlan(
        maxmemory_mb=Tuned(
            cache_mb,
            f"RAM/{REDIS_CACHE_RAM_DIVISOR} within {REDIS_MIN_MB} MiB..{REDIS_CACHE_MAX_MB} MiB: "
            "more cache, higher hit ratio; LRU keeps it bounded",
        ),
        maxmemory_policy=Tuned("allkeys-lru", "cache only: evict the least recently used key"),
        persistence=Tuned("none", "every cached value can be rebuilt from PostgreSQL"),
    )
    return queue, cache


def _ai_in_flight(cores: int) -> int:
    users = cores * USERS_PER_CORE
    return max(1, math.ceil(users * AI_MESSAGES_PER_USER_PER_SECOND * AI_REPLY_SECONDS))


def plan_for(
    host: HostFacts, role: NodeRole = "all-in-one", app_nodes: int = DEFAULT_APP_NODES
) -> TuningPlan:
    """The whole tuning plan for ``host`` in ``role``: a pure function of cores, RAM, disk kind
    and role. An ``app`` node gives the host (less the OS headroom) to web and workers; a
    ``data`` node to PostgreSQL and Redis, with max_connections for ``app_nodes`` app nodes."""
    if role == "data":
        return _data_plan(host, max(1, app_nodes))
    ram, cores = host.ram_mb, host.cores
    headroom = math.ceil(ram * OS_HEADROOM_FRACTION)
    redis_queue, redis_cache = _redis_plans(ram)
    redis_mb = (
        redis_queue.maxmemory_mb.value * REDIS_QUEUE_FORK_FACTOR + redis_cache.maxmemory_mb.value
    )
    if role == "app":
        redis_mb = 0

    # The minimum app: one web worker and one worker process per queue. PostgreSQL gets half of
    # RAM, or what is left after the minimum app when that is less (hosts of a few GiB).
    essentials = WEB_PROCESS_RSS_MB + 3 * WORKER_PROCESS_RSS_MB
    spare = ram - headroom - redis_mb - essentials
    half = int(ram * POSTGRES_RAM_FRACTION)
    postgres_mb = min(half, spare) if role == "all-in-one" else 0
    if role == "app":
        postgres_reason = "none: PostgreSQL runs on the data node"
    elif postgres_mb == half:
        postgres_reason = "half of RAM: PostgreSQL shares the host with the app (as in Zulip)"
    else:
        postgres_reason = (
            "less than half of RAM: what is left after the OS headroom, Redis and the minimum "
            "app (1 web worker, 1 process per queue)"
        )
    app_mb = ram - headroom - redis_mb - postgres_mb

    # ai: Little's law sizes the replies in flight; processes spread them over cores.
    in_flight = _ai_in_flight(cores)
    ai_wanted = math.ceil(in_flight / AI_CONCURRENCY_PER_PROCESS)
    ai_fit = 1 + (app_mb - essentials) // WORKER_PROCESS_RSS_MB
    ai_processes = max(1, min(ai_wanted, ai_fit))
    ai_slots = in_flight * AI_SLOT_HEADROOM
    ai_concurrency = min(AI_MAX_CONCURRENCY_PER_PROCESS, math.ceil(ai_slots / ai_processes))
    workers_mb = (ai_processes + 2) * WORKER_PROCESS_RSS_MB
    ai_reason_processes = (
        f"{in_flight} replies in flight (Little's law: {USERS_PER_CORE:.0f} users/core x 1 "
        f"message/min x {AI_REPLY_SECONDS:.0f} s) over ~{AI_CONCURRENCY_PER_PROCESS} per process"
    )
    if ai_processes < ai_wanted:
        ai_reason_processes += f"; memory allows {ai_processes} of {ai_wanted}"

    web_fit = (app_mb - workers_mb) // WEB_PROCESS_RSS_MB
    web_workers = max(1, min(cores, web_fit))
    if web_workers == cores:
        web_reason = "one per core (memory allows it)"
    else:
        web_reason = (
            f"memory-bound (GitLab's rule: RAM/core {ram / cores / 1024:.2f} GiB): "
            f"{human_mb(app_mb - workers_mb)} left / {WEB_PROCESS_RSS_MB} MiB per worker"
        )
    web_mb = web_workers * WEB_PROCESS_RSS_MB

    heavy_concurrency = (
        HEAVY_QUEUE_CONCURRENCY_LARGE if cores >= 8 else HEAVY_QUEUE_CONCURRENCY_SMALL
    )
    queues = {
        "ai": QueuePlan(
            processes=Tuned(ai_processes, ai_reason_processes),
            concurrency=Tuned(
                ai_concurrency,
                f"{in_flight} in flight x {AI_SLOT_HEADROOM} headroom (bursts, more users than "
                f"planned) / {ai_processes} process(es), at most "
                f"{AI_MAX_CONCURRENCY_PER_PROCESS}: I/O bound, one coroutine per reply",
            ),
        ),
        "default": QueuePlan(
            processes=Tuned(1, "OTP delivery and webhooks are light"),
            concurrency=Tuned(DEFAULT_QUEUE_CONCURRENCY, "short network calls, a few at a time"),
        ),
        "heavy": QueuePlan(
            processes=Tuned(1, "exports, imports and purges are rare"),
            concurrency=Tuned(
                heavy_concurrency, "heavy on disk and CPU: 1, or 2 on hosts with 8+ cores"
            ),
        ),
    }

    planned_users = math.ceil(cores * USERS_PER_CORE)
    per_worker = math.ceil(planned_users * CONNECTIONS_PER_USER / web_workers) * CONNECTION_HEADROOM
    connections = _clamp(per_worker, MIN_CONNECTIONS_PER_WORKER, MAX_CONNECTIONS_PER_WORKER)
    connections_reason = (
        f"{planned_users} users planned x {CONNECTIONS_PER_USER} connections (keep-alive + "
        f"WebSocket) / {web_workers} worker(s) x {CONNECTION_HEADROOM} headroom (reconnect "
        f"storms, uneven spread), within {MIN_CONNECTIONS_PER_WORKER}..{MAX_CONNECTIONS_PER_WORKER}"
        " (the unit's open-file limit)"
    )

    processes = web_workers + ai_processes + 2
    active_target = ACTIVE_CONNECTIONS_PER_CORE * cores
    share = _clamp(active_target // processes, MIN_POOL_SHARE, MAX_POOL_SHARE)
    app = AppPlan(
        web_workers=Tuned(web_workers, web_reason),
        connections_per_worker=Tuned(connections, connections_reason),
        backlog=Tuned(
            LISTEN_BACKLOG,
            "absorbs connect bursts; Linux caps it at net.core.somaxconn (4096 by default)",
        ),
        queues=queues,
        pool_size=Tuned(
            share * POOL_BURST_FACTOR,
            f"{POOL_BURST_FACTOR} x this process's share ({share}) of "
            f"~{ACTIVE_CONNECTIONS_PER_CORE} busy connections per core ({active_target} over "
            f"{processes} processes, within "
            f"{MIN_POOL_SHARE}..{MAX_POOL_SHARE}): one fixed pool, kept open, so bursts find "
            "their connections ready",
        ),
        connection_reserve=Tuned(
            ADMIN_CONNECTION_RESERVE,
            "superuser_reserved_connections, wingmanctl, migrations, backups, monitoring",
        ),
    )

    memory = MemoryPlan(
        total_mb=Tuned(ram, "detected or given"),
        os_headroom_mb=Tuned(
            headroom, f"at least {OS_HEADROOM_FRACTION:.0%} of RAM for the OS and page cache"
        ),
        postgres_mb=Tuned(postgres_mb, postgres_reason),
        redis_mb=Tuned(
            redis_mb,
            "none: both Redis roles run on the data node"
            if role == "app"
            else "queue maxmemory x 2 (AOF rewrite fork, copy-on-write) + cache maxmemory",
        ),
        web_mb=Tuned(web_mb, f"{web_workers} worker(s) x {WEB_PROCESS_RSS_MB} MiB"),
        workers_mb=Tuned(
            workers_mb, f"{ai_processes + 2} SAQ process(es) x {WORKER_PROCESS_RSS_MB} MiB"
        ),
    )
    return TuningPlan(
        host=host,
        memory=memory,
        postgres=_postgres_plan(host, postgres_mb, app, 1),
        redis_queue=redis_queue,
        redis_cache=redis_cache,
        app=app,
        role=role,
    )


def _data_plan(host: HostFacts, app_nodes: int) -> TuningPlan:
    """A data node: PostgreSQL gets all RAM but the OS headroom and Redis; no web, no workers.
    Its max_connections holds the pools of ``app_nodes`` app nodes the size of this host."""
    ram = host.ram_mb
    headroom = math.ceil(ram * OS_HEADROOM_FRACTION)
    redis_queue, redis_cache = _redis_plans(ram)
    redis_mb = (
        redis_queue.maxmemory_mb.value * REDIS_QUEUE_FORK_FACTOR + redis_cache.maxmemory_mb.value
    )
    postgres_mb = ram - headroom - redis_mb
    app = plan_for(host, "app").app
    memory = MemoryPlan(
        total_mb=Tuned(ram, "detected or given"),
        os_headroom_mb=Tuned(
            headroom, f"at least {OS_HEADROOM_FRACTION:.0%} of RAM for the OS and page cache"
        ),
        postgres_mb=Tuned(
            postgres_mb, "all RAM but the OS headroom and Redis: a data node runs no app"
        ),
        redis_mb=Tuned(
            redis_mb, "queue maxmemory x 2 (AOF rewrite fork, copy-on-write) + cache maxmemory"
        ),
        web_mb=Tuned(0, "none: web runs on the app nodes"),
        workers_mb=Tuned(0, "none: workers run on the app nodes"),
    )
    return TuningPlan(
        host=host,
        memory=memory,
        postgres=_postgres_plan(host, postgres_mb, app, app_nodes),
        redis_queue=redis_queue,
        redis_cache=redis_cache,
        app=app,
        role="data",
        app_nodes=app_nodes,
    )


def _postgres_plan(host: HostFacts, budget_mb: int, app: AppPlan, app_nodes: int) -> PostgresPlan:
    """PGTune's web profile on PostgreSQL's memory budget (not on all of RAM)."""
    cores = host.cores
    needed = app.peak_connections * app_nodes + app.connection_reserve.value
    max_connections = max(MIN_MAX_CONNECTIONS, math.ceil(needed / 10) * 10)
    pools = f"pools {app.peak_connections} (pool {app.pool_size.value} x {app.processes} processes)"
    if app_nodes > 1:
        pools += f" x {app_nodes} app nodes of this size"
    if budget_mb <= 0:
        # An app node's PostgreSQL plan is never rendered; PGTune's formulas still need a budget.
        budget_mb = MIN_RAM_MB // 2
    shared_buffers = budget_mb // 4
    workers = cores
    work_mem_kb = max(
        WORK_MEM_MIN_KB,
        (budget_mb - shared_buffers) * 1024 // ((max_connections + workers) * 3),
    )
    ssd = host.disk == "ssd"
    per_gather = min(MAX_PARALLEL_PER_GATHER, math.ceil(cores / 2))
    budget = human_mb(budget_mb)
    return PostgresPlan(
        max_connections=Tuned(
            max_connections,
            f"{pools} + reserve {app.connection_reserve.value}, rounded up to 10, "
            f"at least {MIN_MAX_CONNECTIONS}",
        ),
        shared_buffers_mb=Tuned(shared_buffers, f"budget {budget} / 4 (PGTune web)"),
        effective_cache_size_mb=Tuned(budget_mb * 3 // 4, f"budget {budget} x 3/4 (PGTune web)"),
        work_mem_kb=Tuned(
            work_mem_kb,
            "(budget - shared_buffers) / ((max_connections + max_worker_processes) x 3), "
            "at least 4 MB (PGTune web)",
        ),
        maintenance_work_mem_mb=Tuned(
            min(MAINTENANCE_WORK_MEM_MAX_MB, budget_mb // 16),
            f"budget {budget} / 16, at most 2 GB (PGTune)",
        ),
        wal_buffers_mb=Tuned(WAL_BUFFERS_MB, "PostgreSQL's own cap for auto-tuned wal_buffers"),
        min_wal_size_mb=Tuned(MIN_WAL_SIZE_MB, "PGTune web"),
        max_wal_size_mb=Tuned(MAX_WAL_SIZE_MB, "PGTune web: fewer forced checkpoints"),
        checkpoint_completion_target=Tuned(
            CHECKPOINT_COMPLETION_TARGET, "spread checkpoint writes (PostgreSQL 14+ default)"
        ),
        random_page_cost=Tuned(
            1.1 if ssd else 4.0,
            "SSD: random reads cost about as much as sequential" if ssd else "HDD: seeks are dear",
        ),
        effective_io_concurrency=Tuned(
            200 if ssd else 2, "SSD serves many reads at once" if ssd else "HDD: one head"
        ),
        max_worker_processes=Tuned(cores, "one per core (PGTune)"),
        max_parallel_workers=Tuned(cores, "one per core (PGTune)"),
        max_parallel_workers_per_gather=Tuned(
            per_gather, f"min({MAX_PARALLEL_PER_GATHER}, ceil(cores/2)) (PGTune web)"
        ),
        max_parallel_maintenance_workers=Tuned(
            per_gather, f"min({MAX_PARALLEL_PER_GATHER}, ceil(cores/2)) (PGTune)"
        ),
    )
