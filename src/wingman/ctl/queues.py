"""``wingmanctl queues``: what each SAQ queue holds; ``retry`` and ``abort`` a job (audited).

Reads the queue Redis directly (works while the web server is down), through the same code as
``GET /api/v1/admin/queues`` (domain/admin/queues.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import QUEUE_NAMES, Settings
from wingman.ctl.output import (
    EXIT_DOWN,
    EXIT_REFUSED,
    EXIT_USAGE,
    emit_object,
    emit_report,
    json_option,
)
from wingman.ctl.session import cli_actor, cli_settings, run_in_transaction

T = TypeVar("T")
JOB_COLUMNS = ["queue", "list", "key", "function", "status", "attempts", "when", "error"]


async def _on_queue(settings: Settings, name: str, work: Callable[[Any], Awaitable[T]]) -> T:
    from saq.queue.redis import RedisQueue

    from wingman.server.redis import client as redis_client

    client = redis_client(settings.redis.queue_url, timeout=5)
    try:
        return await work(RedisQueue(client, name=name))
    finally:
        await client.aclose()


def _redis_down(exc: Exception) -> SystemExit:
    click.echo(f"error: cannot reach the queue Redis: {exc}", err=True)
    return SystemExit(EXIT_DOWN)


def _one_line(error: str | None) -> str:
    if not error:
        return ""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= 120 else last[:119] + "…"


def _rows(view: Any) -> list[dict[str, Any]]:
    rows = []
    for queue in view.queues:
        for label, jobs, stamp in (
            ("running", queue.running, "started_at"),
            ("waiting", queue.waiting, "queued_at"),
            ("failed", queue.failed, "finished_at"),
        ):
            for job in jobs:
                when = getattr(job, stamp)
                rows.append(
                    {
                        "queue": queue.name,
                        "list": label,
                        "key": job.key,
                        "function": job.function,
                        "status": job.status,
                        "attempts": f"{job.attempts}/{job.retries}",
                        "when": when.isoformat(timespec="seconds") if when else None,
                        "error": _one_line(job.error),
                    }
                )
    return rows


@click.group(invoke_without_command=True)
@click.option(
    "--limit",
    type=click.IntRange(1, 200),
    default=20,
    show_default=True,
    help="Most jobs shown per list (running, waiting, failed) and queue.",
)
@json_option
@click.pass_context
def queues(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Show every queue's depth and its running, waiting and failed jobs (with their error).

    \b
    Failed jobs stay listed for a day. Exit status: 0 shown, 2 the queue Redis is unreachable.
    Subcommands retry and abort act on one job; both are written to the audit log.
    """
    if ctx.invoked_subcommand is not None:
        return
    from redis.exceptions import RedisError

    from wingman.domain.admin.queues import QueuesView, queue_view

    settings = cli_settings()

    async def main() -> QueuesView:
        views = [
            await _on_queue(settings, name, lambda queue: queue_view(queue, limit))
            for name in QUEUE_NAMES
        ]
        return QueuesView(queues=views)

    try:
        view = asyncio.run(main())
    except (RedisError, OSError) as exc:
        raise _redis_down(exc) from None
    footer = "  ".join(
        f"{q.name}: {q.queued} queued, {q.active} active, {q.scheduled} scheduled,"
        f" {q.failed_total} failed, {q.workers} worker(s)"
        for q in view.queues
    )
    emit_report(msgspec.to_builtins(view), _rows(view), JOB_COLUMNS, as_json=as_json, footer=footer)


def _act(queue_name: str, key: str, action: str, as_json: bool) -> None:
    from redis.exceptions import RedisError

    from wingman.db.models import AuditLogEntry
    from wingman.domain.admin.queues import UnknownJob, WrongJobState, abort_job, retry_job

    if queue_name not in QUEUE_NAMES:
        click.echo(f"error: no queue {queue_name!r} (known: {', '.join(QUEUE_NAMES)})", err=True)
        raise SystemExit(EXIT_USAGE)
    settings = cli_settings()
    act = retry_job if action == "retry" else abort_job

    async def work(session: AsyncSession) -> dict[str, Any]:
        # Connect first: an action that cannot be audited is not taken.
        await session.connection()
        try:
            job = await _on_queue(settings, queue_name, lambda queue: act(queue, key))
        except UnknownJob:
            click.echo(f"error: no job {key!r} in {queue_name} (or its record expired)", err=True)
            raise SystemExit(EXIT_USAGE) from None
        except WrongJobState as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_REFUSED) from None
        except RedisError as exc:
            raise _redis_down(exc) from None
        session.add(
            AuditLogEntry(
                actor=cli_actor(),
                action=f"queues.{action}",
                target=f"job:{queue_name}:{key}",
                details={"function": job.function, "status": job.status},
            )
        )
        data: dict[str, Any] = msgspec.to_builtins(job)
        return {"queue": queue_name, **data}

    emit_object(run_in_transaction(settings, work), as_json=as_json)


@queues.command()
@click.argument("queue_name", metavar="QUEUE")
@click.argument("key")
@json_option
def retry(queue_name: str, key: str, as_json: bool) -> None:
    """Run the failed or aborted job KEY of QUEUE again, with its whole retry budget.

    Exit status: 0 done, 2 Redis or PostgreSQL unreachable, 3 the job is not failed or
    aborted, 64 no such queue or job.
    """
    _act(queue_name, key, "retry", as_json)


@queues.command()
@click.argument("queue_name", metavar="QUEUE")
@click.argument("key")
@json_option
def abort(queue_name: str, key: str, as_json: bool) -> None:
    """Abort the queued or running job KEY of QUEUE (a running one is cancelled within a second).

    Exit status: 0 done, 2 Redis or PostgreSQL unreachable, 3 the job already ended,
    64 no such queue or job.
    """
    _act(queue_name, key, "abort", as_json)
