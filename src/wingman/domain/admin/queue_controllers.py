"""Routes: ``/api/v1/admin/queues`` (admins only): what each queue holds; retry, abort."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, Parameter
from litestar.status_codes import HTTP_200_OK
from redis.exceptions import RedisError
from saq.queue.redis import RedisQueue
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.config import QUEUE_NAMES
from wingman.domain.admin.queues import (
    QueueJob,
    QueuesView,
    UnknownJob,
    UnknownQueue,
    WrongJobState,
    abort_job,
    check_queue,
    queue_view,
    retry_job,
)
from wingman.domain.catalog.services import api_actor, audit
from wingman.queues import Queues
from wingman.server.auth import AuthUser, provide_current_user
from wingman.server.errors import RETRY_AFTER_SECONDS, Problem
from wingman.server.guards import requires_admin

ListLimit = Annotated[int, Parameter(ge=1, le=200)]
JobKey = Annotated[str, Parameter(min_length=1, max_length=200)]


def _queue(queues: Queues, name: str) -> RedisQueue:
    try:
        queue: RedisQueue = queues[check_queue(name)]
    except UnknownQueue:
        raise Problem(
            404, "queue-not-found", f"No such queue (known: {', '.join(QUEUE_NAMES)})."
        ) from None
    return queue


def _queue_down() -> Problem:
    return Problem(
        503,
        "unavailable",
        "The queue Redis cannot be reached right now; try again shortly.",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _job_problem(exc: UnknownJob | WrongJobState) -> Problem:
    if isinstance(exc, UnknownJob):
        return Problem(404, "job-not-found", "No such job (or its record has expired).")
    return Problem(409, "job-state", str(exc), extra={"job_status": exc.job.status})


async def _act(
    queues: Queues,
    db_session: AsyncSession,
    current_user: AuthUser,
    *,
    job: tuple[str, str],
    action: str,
) -> QueueJob:
    """Retry or abort ``job`` (queue name, key) and audit it as ``queues.<action>``."""
    queue_name, key = job
    queue = _queue(queues, queue_name)
    actor = await api_actor(db_session, current_user.id)
    act = retry_job if action == "retry" else abort_job
    try:
        done = await act(queue, key)
    except (UnknownJob, WrongJobState) as exc:
        raise _job_problem(exc) from None
    except (RedisError, OSError):
        raise _queue_down() from None
    audit(
        db_session,
        actor,
        f"queues.{action}",
        f"job:{queue_name}:{key}",
        function=done.function,
        status=done.status,
    )
    await db_session.commit()
    return done


class AdminQueueController(Controller):
    path = "/admin/queues"
    tags = ("admin",)
    guards = [requires_admin]  # noqa: RUF012
    dependencies = {  # noqa: RUF012
        "current_user": Provide(provide_current_user, sync_to_thread=False),
    }

    @get(
        "",
        summary="Every queue: depth, running, waiting and failed jobs",
        description=(
            "Per queue: counts of queued, active and scheduled jobs and live workers, and at"
            " most `limit` jobs of each list (failed ones newest first, with the end of their"
            " error). Failed jobs stay listed for a day."
        ),
    )
    async def overview(self, queues: NamedDependency[Queues], limit: ListLimit = 20) -> QueuesView:
        try:
            return QueuesView(
                queues=[await queue_view(_queue(queues, name), limit) for name in QUEUE_NAMES]
            )
        except (RedisError, OSError):
            raise _queue_down() from None

    @post(
        "/{queue_name:str}/jobs/{key:str}/retry",
        status_code=HTTP_200_OK,
        summary="Run a failed or aborted job again (audited)",
    )
    async def retry(
        self,
        queue_name: FromPath[str],
        key: FromPath[JobKey],
        queues: NamedDependency[Queues],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
    ) -> QueueJob:
        return await _act(queues, db_session, current_user, job=(queue_name, key), action="retry")

    @post(
        "/{queue_name:str}/jobs/{key:str}/abort",
        status_code=HTTP_200_OK,
        summary="Abort a queued or running job (audited)",
    )
    async def abort(
        self,
        queue_name: FromPath[str],
        key: FromPath[JobKey],
        queues: NamedDependency[Queues],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
    ) -> QueueJob:
        return await _act(queues, db_session, current_user, job=(queue_name, key), action="abort")
