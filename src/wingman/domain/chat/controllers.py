"""Routes: ``/api/v1/sessions`` with their messages and feedback events, and
``/api/v1/messages/{id}/regenerate|cancel``: every message route in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
)
from litestar.types import Scope
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from wingman.config import Settings
from wingman.db.models import ProcessingStatus
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.registry import MessageLimits
from wingman.domain.catalog.services import config_value
from wingman.domain.chat.replies import (
    ReplyDispatch,
    ReplyService,
    enforce_quota,
    stop_running,
)
from wingman.domain.chat.schemas import (
    EventIn,
    EventOut,
    MessageIn,
    MessageOut,
    MessagePage,
    MessagePair,
    SessionDetail,
    SessionIn,
    SessionOut,
    SessionPage,
    SessionPatch,
    message_out,
    session_out,
)
from wingman.domain.chat.services import ChatService
from wingman.domain.realtime.event_frames import MessageFailed
from wingman.domain.realtime.events import EventBus
from wingman.server.auth import AuthUser, provide_current_user
from wingman.server.cache import ReadCache
from wingman.server.cursors import MAX_CURSOR_CHARS, cursor_key
from wingman.server.errors import Problem
from wingman.server.metrics import AI_REPLIES
from wingman.server.ratelimit import RateLimiter

DEFAULT_PAGE = 20
MAX_PAGE = 100
# The read cache's name for the caller's first page of sessions (also read before routing, by
# domain/chat/hot_list.py).
SESSION_LIST_CACHE = "sessions"


def first_page_key(limit: int) -> str:
    return f"first:{limit}"


Cursor = Annotated[str | None, Parameter(max_length=MAX_CURSOR_CHARS)]
PageSize = Annotated[int, Parameter(ge=1, le=MAX_PAGE)]


def provide_chat(
    settings: NamedDependency[Settings],
    current_user: NamedDependency[AuthUser],
    db_session: NamedDependency[AsyncSession],
) -> ChatService:
    return ChatService(db_session, current_user.id, cursor_key(settings.security.secret_key))


@asynccontextmanager
async def autocommit_chat(
    engine: AsyncEngine, settings: Settings, user: AuthUser
) -> AsyncIterator[ChatService]:
    """A :class:`ChatService` on a connection of its own from the autocommit engine, for reads
    and one-statement writes: no ``BEGIN``/``COMMIT`` round trips (see
    :func:`~wingman.server.database.autocommit_engine`), no ORM session around it, and a cached
    read's loader takes no connection when the cache answers (the ``chat`` dependency would
    make, commit and close a session per request, a tenth of a cached read's time). It commits
    when the block ends without an error: nothing to do in autocommit, and what makes a write
    stick behind a pooler, where the engine is transactional."""
    async with engine.connect() as connection:
        yield ChatService(connection, user.id, cursor_key(settings.security.secret_key))
        await connection.commit()


def set_fields(data: msgspec.Struct) -> dict[str, object]:
    """The fields a PATCH body actually carries (``null`` included, left-out ones not)."""
    return {
        name: value
        for name, value in msgspec.structs.asdict(data).items()
        if value is not msgspec.UNSET
    }


def content_problem(detail: str, message: str) -> Problem:
    return Problem(
        422,
        "validation-failed",
        detail,
        extra={"errors": [{"key": "content", "message": message, "source": "body"}]},
    )


async def check_content(catalog: CatalogCache, db: AsyncSession | AsyncEngine, content: str) -> str:
    """Refuse whitespace-only text and text over ``limits.message`` (read from the cache)."""
    if not content.strip():
        raise content_problem("The message has no text.", "must not be blank")
    limits = await config_value(catalog, db, "limits.message", MessageLimits)
    if len(content) > limits.max_content_length:
        raise content_problem(
            "The message is too long.",
            f"must be at most {limits.max_content_length} characters",
        )
    return content


async def session_detail(chat: ChatService, session_id: UUID, limit: int) -> SessionDetail:
    """A session with its profile, tone and newest page of messages (two queries)."""
    session, profile, tone = await chat.session_with_related(session_id)
    messages, next_cursor = await chat.message_page(session_id, None, limit)
    return SessionDetail(
        session=session,
        profile=profile,
        tone=tone,
        messages=MessagePage(items=messages, next_cursor=next_cursor),
    )


class ChatSessionController(Controller):
    path = "/sessions"
    tags = ("chat",)
    # Litestar reads this class attribute as the controller's dependency map.
    dependencies = {  # noqa: RUF012
        "current_user": Provide(provide_current_user, sync_to_thread=False),
        "chat": Provide(provide_chat, sync_to_thread=False),
    }

    @get("", summary="The caller's sessions, most recently active first")
    async def list_sessions(
        self,
        *,
        settings: NamedDependency[Settings],
        autocommit_engine: NamedDependency[AsyncEngine],
        read_cache: NamedDependency[ReadCache],
        scope: Scope,
        current_user: NamedDependency[AuthUser],
        cursor: Cursor = None,
        limit: PageSize = DEFAULT_PAGE,
    ) -> SessionPage:
        async def load() -> SessionPage:
            async with autocommit_chat(autocommit_engine, settings, current_user) as chat:
                rows, next_cursor = await chat.list_sessions(cursor, limit)
            return SessionPage(items=rows, next_cursor=next_cursor)

        if cursor is not None:
            return await load()
        # The first page is the hot read (every app start); any write of the user's drops it.
        key = first_page_key(limit)
        return await read_cache.get_or_load(
            SESSION_LIST_CACHE, current_user.id, key, load, SessionPage, scope=scope
        )

    @post("", status_code=HTTP_201_CREATED, summary="Start a session")
    async def create_session(
        self, data: JSONBody[SessionIn], chat: NamedDependency[ChatService]
    ) -> SessionOut:
        return session_out(await chat.create_session(msgspec.structs.asdict(data)))

    @get(
        "/{session_id:uuid}",
        summary="A session with its profile, tone and newest page of messages",
        description="From the read cache when warm; otherwise two queries whatever `limit` is: "
        "the session joined with its profile and tone, then the page of messages.",
    )
    async def get_session(
        self,
        *,
        session_id: FromPath[UUID],
        settings: NamedDependency[Settings],
        autocommit_engine: NamedDependency[AsyncEngine],
        read_cache: NamedDependency[ReadCache],
        scope: Scope,
        current_user: NamedDependency[AuthUser],
        limit: PageSize = DEFAULT_PAGE,
    ) -> SessionDetail:
        async def load() -> SessionDetail:
            async with autocommit_chat(autocommit_engine, settings, current_user) as chat:
                return await session_detail(chat, session_id, limit)

        # Keyed by the caller: another user's id misses and gets the 404 from the database.
        key = f"{session_id}:{limit}"
        return await read_cache.get_or_load(
            "session", current_user.id, key, load, SessionDetail, scope=scope
        )

    @patch("/{session_id:uuid}", summary="Change title, tone or profile; archive or reactivate")
    async def patch_session(
        self,
        session_id: FromPath[UUID],
        data: JSONBody[SessionPatch],
        chat: NamedDependency[ChatService],
    ) -> SessionOut:
        return session_out(await chat.update_session(session_id, set_fields(data)))

    @delete(
        "/{session_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a session with its messages and events",
    )
    async def delete_session(
        self, session_id: FromPath[UUID], chat: NamedDependency[ChatService]
    ) -> None:
        await chat.delete_session(session_id)

    @get("/{session_id:uuid}/messages", summary="A page of messages, newest first")
    async def list_messages(
        self,
        *,
        session_id: FromPath[UUID],
        settings: NamedDependency[Settings],
        autocommit_engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[AuthUser],
        before: Cursor = None,
        limit: PageSize = DEFAULT_PAGE,
    ) -> MessagePage:
        async with autocommit_chat(autocommit_engine, settings, current_user) as chat:
            items, next_cursor = await chat.message_page(session_id, before, limit)
        return MessagePage(items=items, next_cursor=next_cursor)

    @post(
        "/{session_id:uuid}/messages",
        summary="Send a message; the AI reply is queued",
        description="202 with the stored user message and the queued AI message. A repeated "
        "`idempotency_key` in the same session stores nothing and answers 200 with the first "
        "pair.",
        status_code=HTTP_202_ACCEPTED,
        responses={
            HTTP_200_OK: ResponseSpec(
                data_container=MessagePair, description="Replay of an earlier idempotent post"
            )
        },
    )
    async def post_message(
        self,
        *,
        session_id: FromPath[UUID],
        data: JSONBody[MessageIn],
        catalog: NamedDependency[CatalogCache],
        rate_limiter: NamedDependency[RateLimiter],
        dispatch: NamedDependency[ReplyDispatch],
        current_user: NamedDependency[AuthUser],
        settings: NamedDependency[Settings],
        autocommit_engine: NamedDependency[AsyncEngine],
    ) -> Response[MessagePair]:
        content = await check_content(catalog, autocommit_engine, data.content)
        await enforce_quota(rate_limiter, catalog, autocommit_engine, current_user, "chat", "ai")
        # One statement that commits by itself (behind a pooler, at the block's end): the reply
        # job and the events only follow once the rows are durable and visible.
        async with autocommit_chat(autocommit_engine, settings, current_user) as chat:
            pair = await chat.post_message(session_id, content, data.idempotency_key)
        if pair.created:
            await dispatch.created(current_user.id, [pair.user_message, pair.ai_message])
        elif pair.ai_message.processing_status is ProcessingStatus.QUEUED:
            # A replayed post: the first try may have committed and died before its enqueue (a
            # node killed, a proxy sending the request again elsewhere). Enqueue again; a job
            # that does exist under the message's key absorbs it.
            await dispatch.enqueue(pair.ai_message.id)
        body = MessagePair(user_message=pair.user_message, ai_message=pair.ai_message)
        return Response(body, status_code=HTTP_202_ACCEPTED if pair.created else HTTP_200_OK)

    @post(
        "/{session_id:uuid}/events",
        status_code=HTTP_201_CREATED,
        summary="Record feedback on a session or one of its messages",
    )
    async def post_event(
        self,
        *,
        session_id: FromPath[UUID],
        data: JSONBody[EventIn],
        settings: NamedDependency[Settings],
        autocommit_engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[AuthUser],
    ) -> EventOut:
        # One INSERT ... SELECT: it commits by itself.
        async with autocommit_chat(autocommit_engine, settings, current_user) as chat:
            return await chat.add_event(session_id, data.type.value, data.message_id, data.payload)


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
        catalog: NamedDependency[CatalogCache],
        rate_limiter: NamedDependency[RateLimiter],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        replies: NamedDependency[ReplyService],
        dispatch: NamedDependency[ReplyDispatch],
    ) -> MessageOut:
        await replies.check_regenerate_allowed(catalog)
        await enforce_quota(rate_limiter, catalog, db_session, current_user, "ai")
        reply = await replies.regenerate(message_id)
        await db_session.commit()
        body = message_out(reply)
        await dispatch.created(current_user.id, [body])
        return body

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
        *,
        message_id: FromPath[UUID],
        queue_redis: NamedDependency[Redis],
        events: NamedDependency[EventBus],
        current_user: NamedDependency[AuthUser],
        db_session: NamedDependency[AsyncSession],
        replies: NamedDependency[ReplyService],
    ) -> MessageOut:
        cancelled = await replies.cancel(message_id)
        await db_session.commit()
        AI_REPLIES.labels(ProcessingStatus.CANCELLED.value).inc()
        await stop_running(queue_redis, cancelled.id)
        body = message_out(cancelled)
        # One try: the answer carries the outcome, and the event is marked published, so a
        # reply job that runs again for this message never announces the cancel twice.
        await events.publish_final(
            current_user.id, cancelled.id, MessageFailed(data=body), keep_trying_s=0
        )
        return body
