"""Every Prometheus metric Wingman exposes, and the exposition that ``GET /metrics`` serves.

Web (Granian) workers and SAQ worker processes each count in their own memory, so a scrape that
reached one process would see a fraction of the traffic. prometheus-client's multiprocess mode
fixes that: when ``PROMETHEUS_MULTIPROC_DIR`` is set *before prometheus-client is first
imported*, every value lives in a per-process memory-mapped file in that folder and a scrape
merges all of them. :mod:`wingman.server.metrics_directory` prepares one such folder per process
kind under the instance's metrics folder (``web/``, ``worker-<queue>-<pid>/``) and sets the
variable; :func:`exposition` merges every folder, so the web's ``/metrics`` also shows the job
metrics of the SAQ workers.

Without the variable (in-process tests, a one-off script) the module works in ordinary
single-process mode: importing it is always safe.

Gauges say how they combine across processes (``multiprocess_mode``): ``livesum`` adds the live
processes' values (in-flight requests, open sockets, pool connections); ``mostrecent`` keeps the
newest value written by any process (queue depth, sampled by whichever process serves a scrape).
A process's live gauges are dropped when it exits (:func:`mark_process_dead`) and, should it
have been killed, at the next scrape (its pid is gone).

Other modules import the objects below by name; the names are a contract (docs/metrics.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from wingman.server.metrics_directory import MULTIPROC_ENV, pid_alive

CONTENT_TYPE = CONTENT_TYPE_LATEST

# --- HTTP -----------------------------------------------------------------------------------

REQUESTS = Counter(
    "wingman_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status_code"],
)
REQUEST_DURATION = Histogram(
    "wingman_request_duration_seconds",
    "Time from request start to the end of the response, by method and route template.",
    ["method", "route"],
)
REQUESTS_IN_FLIGHT = Gauge(
    "wingman_requests_in_flight",
    "HTTP requests being served right now, over all web workers.",
    multiprocess_mode="livesum",
)

# --- Storage --------------------------------------------------------------------------------

DB_POOL_CONNECTIONS = Gauge(
    "wingman_db_pool_connections",
    "Database pool connections over all live processes: size (what the pools may keep open), "
    "open (held now), checked_out (in use).",
    ["state"],
    multiprocess_mode="livesum",
)
REDIS_COMMAND_DURATION = Histogram(
    "wingman_redis_command_duration_seconds",
    "Round trip of one Redis command (or pipeline), by Redis role (queue, cache).",
    ["role"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CACHE_REQUESTS = Counter(
    "wingman_cache_requests",
    "Read-cache lookups by cache name and result (hit, miss).",
    ["cache", "result"],
)

# --- Protection -----------------------------------------------------------------------------

RATE_LIMITED = Counter(
    "wingman_rate_limited",
    "Requests refused with 429 by a rate limit, by scope.",
    ["scope"],
)
DB_POOL_TIMEOUTS = Counter(
    "wingman_db_pool_timeouts",
    "Requests answered 503 because no database connection came free within the pool timeout.",
)

RATE_LIMITER_ERRORS = Counter(
    "wingman_rate_limiter_errors",
    "Rate-limit checks that could not reach their store (the limiter failed open or closed).",
    ["scope"],
)

# --- Realtime -------------------------------------------------------------------------------

WEBSOCKET_CONNECTIONS = Gauge(
    "wingman_websocket_connections",
    "Open WebSocket connections over all web workers.",
    multiprocess_mode="livesum",
)
WEBSOCKET_FRAMES = Counter(
    "wingman_websocket_frames",
    "WebSocket frames by direction (in: from clients, out: to clients).",
    ["direction"],
)

# --- Backups --------------------------------------------------------------------------------

BACKUP_LAST_SUCCESS = Gauge(
    "wingman_backup_last_success_timestamp_seconds",
    "When the newest backup in the backup folder was made (Unix time); absent while there is "
    "none. Read from the folder when /metrics is scraped.",
    multiprocess_mode="mostrecent",
)

TLS_CERTIFICATE_EXPIRY = Gauge(
    "wingman_tls_certificate_expiry_timestamp_seconds",
    "When the certificate the front proxy serves expires (notAfter, Unix time); absent with the "
    "proxy's internal CA (short-lived certificates it renews itself) or when the proxy does not "
    "answer. Read from the proxy when /metrics is scraped.",
    multiprocess_mode="mostrecent",
)

# --- Jobs -----------------------------------------------------------------------------------

QUEUE_DEPTH = Gauge(
    "wingman_queue_depth",
    "Jobs per queue and state (queued, active, scheduled), sampled when /metrics is scraped.",
    ["queue", "state"],
    multiprocess_mode="mostrecent",
)
QUEUE_OLDEST = Gauge(
    "wingman_queue_oldest_seconds",
    "Age of the oldest job waiting in each queue (0 when none waits), sampled when /metrics is "
    "scraped.",
    ["queue"],
    multiprocess_mode="mostrecent",
)
JOB_DURATION = Histogram(
    "wingman_job_duration_seconds",
    "Run time of one job attempt, by queue, function and final status.",
    ["queue", "function", "status"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

# --- AI -------------------------------------------------------------------------------------

AI_PROVIDER_DURATION = Histogram(
    "wingman_ai_provider_duration_seconds",
    "Time of one provider call, request to last token, by provider.",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120),
)
AI_FIRST_TOKEN = Histogram(
    "wingman_ai_first_token_seconds",
    "Time from a provider call to its first token, by provider.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
AI_TOKENS = Counter(
    "wingman_ai_tokens",
    "Tokens by provider and direction (prompt, completion).",
    ["provider", "direction"],
)
AI_FAILURES = Counter(
    "wingman_ai_failures",
    "Failed provider calls by provider and reason.",
    ["provider", "reason"],
)
AI_REPLIES = Counter(
    "wingman_ai_replies",
    "AI replies that reached a final state, by status.",
    ["status"],
)


def multiprocess_directory() -> Path | None:
    """This process's own metrics folder, or None in single-process mode."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


# gauge_livesum_1234.db -> 1234: the files of live-mode gauges carry their writer's pid.
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


class _InstanceCollector(Collector):
    """Merges the files of every process folder under the instance's metrics folder.

    A killed process never ran :func:`mark_process_dead`; its live gauges are skipped here when
    its pid no longer exists, so a crash does not leave phantom in-flight requests or sockets.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in sorted(self.root.glob("*/*.db")):
            match = _LIVE_GAUGE_FILE.match(path.name)
            if match and not pid_alive(int(match.group(1))):
                continue
            files.append(str(path))
        merge = _multiprocess.MultiProcessCollector.merge
        merged: Iterable[Metric] = merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return merged


def exposition() -> bytes:
    """The Prometheus text of every process of this instance (or of this process alone)."""
    own = multiprocess_directory()
    if own is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    registry.register(_InstanceCollector(own.parent))
    return generate_latest(registry)


def mark_process_dead(pid: int | None = None) -> None:
    """Drop this (or ``pid``'s) live gauges when a process exits; a no-op in single-process."""
    own = multiprocess_directory()
    if own is not None:
        dead = os.getpid() if pid is None else pid
        _multiprocess.mark_process_dead(dead, str(own))  # type: ignore[no-untyped-call]


# SAQ's status after an attempt -> the ``status`` label; a job put back for a retry is "retried".
_JOB_OUTCOMES = {"complete": "complete", "failed": "failed", "aborted": "aborted"}


def observe_job(queue: str, function: str, status: str, seconds: float) -> None:
    """Record one job attempt (called from the worker's after-process hook)."""
    outcome = _JOB_OUTCOMES.get(status, "retried")
    JOB_DURATION.labels(queue, function, outcome).observe(seconds)
