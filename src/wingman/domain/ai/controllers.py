"""Routes: ``/api/v1/messages/{id}/regenerate`` and ``/api/v1/messages/{id}/cancel``."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.db.models import ProcessingStatus
from wingman.domain.ai.services import (
    ReplyDispatch,
    ReplyService,
    enforce_quota,
    stop_running,
)
from wingman.domain.chat.schemas import MessageOut, message_out
from wingman.domain.realtime.event_frames import MessageFailed
from wingman.server.auth import AuthUser, provide_current_user
from wingman.server.metrics import AI_REPLIES


def provide_dispatch(state: State) -> ReplyDispatch:
    return ReplyDispatch(state.settings, state.queues["ai"], state.events)


def provide_replies(
    current_user: NamedDependency[AuthUser], db_session: NamedDependency[AsyncSession]
) -> ReplyService:
    return ReplyService(db_session, current_user.id)


class MessageController(Controller):
    path = "/messages"
    tags = ("chat",)
    dependencies = {  # noqa: RUF012 - Litestar reads this class attribute
        "current_user": Provide(provide_current_user, sync_to_thread=False),
        "replies": Provide(provide_replies, sync_to_thread=False),
        "dispatch": Provide(provide_dispatch, sync_to_thread=False),
    }

    @post(
        "/{message_id:uuid}/regenerate",
        status_code=HTTP_202_ACCEPTED,
        summary="Queue another AI reply to the same user message",
        description="`message_id` is an AI reply or the user message it answered. The earlier "
        "replies are kept; the new one is `queued` and streams like any other. Counts against "
        "the `ai` quota.",
    )
    async def regenerate(
        self,
        *,
        message_id: FromPath[UUID],
        state: State,
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        replies: NamedDependency[ReplyService],
        dispatch: NamedDependency[ReplyDispatch],
    ) -> MessageOut:
        await replies.check_regenerate_allowed(state.catalog)
        await enforce_quota(state.rate_limiter, state.catalog, db_session, current_user, "ai")
        reply = await replies.regenerate(message_id)
        await db_session.commit()
        await dispatch.created(current_user.id, [reply])
        return message_out(reply)

    @post(
        "/{message_id:uuid}/cancel",
        status_code=HTTP_200_OK,
        summary="Stop an AI reply that is queued or being written",
        description="The reply becomes `cancelled` at once and its generation stops within a "
        "second; a `message.failed` event carries the cancelled message. 409 when it already "
        "finished.",
    )
    async def cancel(
        self,
        message_id: FromPath[UUID],
        state: State,
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        replies: NamedDependency[ReplyService],
    ) -> MessageOut:
        cancelled = await replies.cancel(message_id)
        await db_session.commit()
        AI_REPLIES.labels(ProcessingStatus.CANCELLED.value).inc()
        await stop_running(state.redis.queue, cancelled.id)
        body = message_out(cancelled)
        await state.events.publish_event_quietly(current_user.id, MessageFailed(data=body))
        return body
