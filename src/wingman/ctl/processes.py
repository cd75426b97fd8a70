"""``wingmanctl serve`` and ``wingmanctl worker``: the processes the service units run.

``wingman-web.service`` runs ``serve`` (Granian serving the app) and ``wingman-worker@.service``
runs ``worker --queue <queue>`` (SAQ workers), as the unprivileged ``wingman`` user. They share
the admin's command line so that there is one, but none of its admin habits: they need no root,
print no tables, and read the settings once, here; what ``wingmanctl``'s group does before any
command (``wingman.ctl.main``) stays nothing, so these start as fast as before.
"""

from __future__ import annotations

import asyncio
import sys

import click

from wingman.config import QUEUE_NAMES, Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from None


@click.command()
@click.option("--host", help="Address to bind (default: server.host).")
@click.option("--port", type=int, help="Port to bind (default: server.port).")
@click.option("--workers", type=int, help="Granian worker processes (default: server.workers).")
# Benchmarks serve a bare app with exactly these server settings, to measure the ceiling.
@click.option("--app", "target", default="wingman.app:serve_app", hidden=True)
def serve(host: str | None, port: int | None, workers: int | None, target: str) -> None:
    """Serve the API with Granian (ASGI, uvloop) until SIGTERM or Ctrl-C."""
    import structlog
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings, HTTP2Settings

    from wingman.server.logging import configure_logging, granian_log_config
    from wingman.server.metrics_directory import use_for_web
    from wingman.server.open_files import raise_for_connections

    settings = _settings()
    # Before Granian forks its workers, which import prometheus-client (multiprocess mode).
    use_for_web(settings, port)
    configure_logging(settings, process="web")
    # Before Granian starts its workers, which inherit the limit.
    files = raise_for_connections(settings.server.connections_per_worker)
    if not files.as_configured:
        structlog.get_logger("wingman.serve").warning(
            "open_file_limit_too_low",
            connections_per_worker=settings.server.connections_per_worker,
            held=files.connections,
            hard_limit=files.hard_limit,
            fix="raise LimitNOFILE (unit) or `ulimit -Hn`, or lower server.connections_per_worker",
        )
    # Imported only now: it imports prometheus-client, which must see the folder chosen above.
    from wingman.server.header_limits import server_buffer_bytes

    # The hard cap on a request head (hyper's default is ~400 KiB; HTTP/2's 16 MiB); the app
    # answers smaller excesses itself (server/header_limits.py).
    head_bytes = server_buffer_bytes(settings.server.max_header_bytes)
    server = Granian(
        target,
        factory=True,
        interface=Interfaces.ASGI,
        address=host or settings.server.host,
        port=port or settings.server.port,
        workers=workers or settings.server.workers,
        loop=Loops.uvloop,
        backlog=settings.server.backlog,
        backpressure=files.connections,
        http1_settings=HTTP1Settings(max_buffer_size=head_bytes),
        http2_settings=HTTP2Settings(max_headers_size=head_bytes),
        log_dictconfig=granian_log_config(),
        log_access=False,
        workers_kill_timeout=settings.server.graceful_timeout,
        # A worker process that dies is replaced, so one crash does not shrink capacity.
        respawn_failed_workers=True,
    )
    server.serve()


@click.command()
@click.option(
    "--queue", "queue_name", type=click.Choice(QUEUE_NAMES), required=True, help="Queue to work."
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    help="Worker processes for the queue (default: worker.queues.<queue>.processes).",
)
def worker(queue_name: str, processes: int | None) -> None:
    """Run SAQ workers for one queue until SIGTERM or Ctrl-C (jobs finish or are requeued).

    With more than one process this one supervises them: each is a `--processes 1` worker, one
    that dies is started again, and SIGTERM stops them all (see wingman.worker_processes).
    """
    from wingman.server.logging import configure_logging

    settings = _settings()
    count = processes or settings.worker.queue(queue_name).processes
    if count > 1:
        from wingman.worker_processes import supervise

        configure_logging(settings, process=f"worker-{queue_name}")
        # `python -m wingman` is wingmanctl: each child is `wingmanctl worker ... --processes 1`.
        one = [sys.executable, "-m", "wingman", "worker", "--queue", queue_name, "--processes", "1"]
        # Children get the grace period for their jobs, plus time to start and close.
        sys.exit(supervise(one, count, stop_timeout=settings.worker.shutdown_grace + 10))

    from wingman.server.metrics_directory import use_for_worker

    # Before wingman.worker imports prometheus-client, so its job metrics reach /metrics.
    use_for_worker(settings, queue_name)
    from wingman.worker import serve_worker

    configure_logging(settings, process=f"worker-{queue_name}")
    worker = serve_worker(settings, queue_name)  # type: ignore[arg-type]
    try:
        import uvloop

        uvloop.run(worker.start())
    except ImportError:  # pragma: no cover - uvloop ships with granian[uvloop]
        asyncio.run(worker.start())
    sys.exit(0)
