"""Routes: ``/api/v1/sessions`` with their messages and feedback events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.datastructures import State
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
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.db.models import ChatSession, SessionEvent
from wingman.domain.ai.services import ReplyDispatch, enforce_quota
from wingman.domain.catalog.registry import MessageLimits
from wingman.domain.catalog.services import config_value
from wingman.domain.chat.pagination import MAX_CURSOR_CHARS, cursor_key
from wingman.domain.chat.schemas import (
    EventIn,
    EventOut,
    MessageIn,
    MessagePage,
    MessagePair,
    SessionDetail,
    SessionIn,
    SessionOut,
    SessionPage,
    SessionPatch,
    ToneBrief,
    message_out,
)
from wingman.domain.chat.services import ChatService
from wingman.domain.profiles.controllers import profile_out
from wingman.server.auth import AuthUser, provide_current_user
from wingman.server.cache import ReadCache
from wingman.server.errors import Problem

DEFAULT_PAGE = 20
MAX_PAGE = 100
# The read cache's name for the caller's first page of sessions (also read before routing, by
# domain/chat/hot_list.py).
SESSION_LIST_CACHE = "sessions"


def first_page_key(limit: int) -> str:
    return f"first:{limit}"


Cursor = Annotated[str | None, Parameter(max_length=MAX_CURSOR_CHARS)]
PageSize = Annotated[int, Parameter(ge=1, le=MAX_PAGE)]


def session_out(chat: ChatSession) -> SessionOut:
    return SessionOut(
        id=chat.id,
        title=chat.title,
        profile_id=chat.profile_id,
        tone_id=chat.tone_id,
        status=chat.status,
        message_count=chat.message_count,
        last_message_at=chat.last_message_at,
        created_at=chat.created_at,
        updated_at=chat.updated_at,
    )


def event_out(event: SessionEvent) -> EventOut:
    return EventOut(
        id=event.id,
        session_id=event.session_id,
        message_id=event.message_id,
        type=event.type,
        payload=dict(event.payload),
        created_at=event.created_at,
    )


def provide_chat(
    state: State, current_user: NamedDependency[AuthUser], db_session: NamedDependency[AsyncSession]
) -> ChatService:
    return ChatService(db_session, current_user.id, cursor_key(state.settings.security.secret_key))


@asynccontextmanager
async def chat_reader(state: State, user: AuthUser) -> AsyncIterator[ChatService]:
    """A :class:`ChatService` on a session of its own, for a cached read's loader: a request
    answered from the cache then opens no database session at all (the ``chat`` dependency
    would make, commit and close one per request, a tenth of a cached read's time)."""
    async with AsyncSession(state.alchemy.get_engine()) as db:
        yield ChatService(db, user.id, cursor_key(state.settings.security.secret_key))


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


async def check_content(state: State, db_session: AsyncSession, content: str) -> str:
    """Refuse whitespace-only text and text over ``limits.message`` (read from the cache)."""
    if not content.strip():
        raise content_problem("The message has no text.", "must not be blank")
    limits = await config_value(state.catalog, db_session, "limits.message", MessageLimits)
    if len(content) > limits.max_content_length:
        raise content_problem(
            "The message is too long.",
            f"must be at most {limits.max_content_length} characters",
        )
    return content


async def session_detail(chat: ChatService, session_id: UUID, limit: int) -> SessionDetail:
    """A session with its profile, tone and newest page of messages (two queries)."""
    found = await chat.get_session(session_id, with_related=True)
    messages, next_cursor = await chat.message_page(session_id, None, limit)
    tone = found.tone
    return SessionDetail(
        session=session_out(found),
        profile=profile_out(found.profile) if found.profile is not None else None,
        tone=ToneBrief(id=tone.id, slug=tone.slug, name=tone.name) if tone else None,
        messages=MessagePage(items=[message_out(row) for row in messages], next_cursor=next_cursor),
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
        state: State,
        scope: Scope,
        current_user: NamedDependency[AuthUser],
        cursor: Cursor = None,
        limit: PageSize = DEFAULT_PAGE,
    ) -> SessionPage:
        async def load() -> SessionPage:
            async with chat_reader(state, current_user) as chat:
                rows, next_cursor = await chat.list_sessions(cursor, limit)
            return SessionPage(items=[session_out(row) for row in rows], next_cursor=next_cursor)

        if cursor is not None:
            return await load()
        # The first page is the hot read (every app start); any write of the user's drops it.
        cache: ReadCache = state.read_cache
        key = first_page_key(limit)
        return await cache.get_or_load(
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
        session_id: FromPath[UUID],
        state: State,
        scope: Scope,
        current_user: NamedDependency[AuthUser],
        limit: PageSize = DEFAULT_PAGE,
    ) -> SessionDetail:
        async def load() -> SessionDetail:
            async with chat_reader(state, current_user) as chat:
                return await session_detail(chat, session_id, limit)

        # Keyed by the caller: another user's id misses and gets the 404 from the database.
        cache: ReadCache = state.read_cache
        key = f"{session_id}:{limit}"
        return await cache.get_or_load(
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
        session_id: FromPath[UUID],
        chat: NamedDependency[ChatService],
        before: Cursor = None,
        limit: PageSize = DEFAULT_PAGE,
    ) -> MessagePage:
        await chat.get_session(session_id)
        rows, next_cursor = await chat.message_page(session_id, before, limit)
        return MessagePage(items=[message_out(row) for row in rows], next_cursor=next_cursor)

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
        state: State,
        current_user: NamedDependency[AuthUser],
        chat: NamedDependency[ChatService],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[MessagePair]:
        content = await check_content(state, db_session, data.content)
        await enforce_quota(
            state.rate_limiter, state.catalog, db_session, current_user, "chat", "ai"
        )
        pair = await chat.post_message(session_id, content, data.idempotency_key)
        # Committed here, not by the after-response hook: the reply job and the events can only
        # follow once the rows are durable and visible.
        await db_session.commit()
        if pair.created:
            dispatch = ReplyDispatch(state.settings, state.queues["ai"], state.events)
            await dispatch.created(current_user.id, [pair.user_message, pair.ai_message])
        body = MessagePair(
            user_message=message_out(pair.user_message), ai_message=message_out(pair.ai_message)
        )
        return Response(body, status_code=HTTP_202_ACCEPTED if pair.created else HTTP_200_OK)

    @post(
        "/{session_id:uuid}/events",
        status_code=HTTP_201_CREATED,
        summary="Record feedback on a session or one of its messages",
    )
    async def post_event(
        self,
        session_id: FromPath[UUID],
        data: JSONBody[EventIn],
        chat: NamedDependency[ChatService],
    ) -> EventOut:
        event = await chat.add_event(session_id, data.type.value, data.message_id, data.payload)
        return event_out(event)
