"""Sessions, messages and feedback events, always scoped by the caller.

Every lookup filters by the caller's user id, so another user's row is "not found" (404), never
"forbidden": the answer reveals nothing about whether the id exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from uuid_utils.compat import uuid7

from wingman.db.keyset import newest_first
from wingman.db.models import (
    ChatSession,
    Message,
    MessageSender,
    ProcessingStatus,
    SessionEvent,
    TargetProfile,
    Tone,
    utcnow,
)
from wingman.domain.profiles.services import profile_not_found
from wingman.server.errors import Problem

SESSIONS_CURSOR = "sessions"
MESSAGES_CURSOR = "messages"

# The ownership check every session route makes and the statements of a message post, built
# once with bound parameters. Building them per call (coercing every value and comparison into
# SQL elements) was about a third of a post's CPU in a profile; the compiled forms were cached
# already, the construction was not.
_OWN_SESSION = select(ChatSession).where(
    ChatSession.id == bindparam("session_id"), ChatSession.user_id == bindparam("user_id")
)
_INSERT_USER_MESSAGE = (
    insert(Message)
    .values(
        id=bindparam("id"),
        session_id=bindparam("session_id"),
        sender=MessageSender.USER,
        content=bindparam("content"),
        processing_status=ProcessingStatus.DONE,
        idempotency_key=bindparam("idempotency_key"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
        completed_at=bindparam("now"),
    )
    .on_conflict_do_nothing(
        index_elements=[Message.session_id, Message.idempotency_key],
        index_where=Message.idempotency_key.is_not(None),
    )
    .returning(Message)
)
_INSERT_AI_MESSAGE = (
    insert(Message)
    .values(
        id=bindparam("id"),
        session_id=bindparam("session_id"),
        sender=MessageSender.AI,
        content="",
        processing_status=ProcessingStatus.QUEUED,
        reply_to_id=bindparam("reply_to_id"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    .returning(Message)
)
# Relative update under the row lock: exact however many posts run at once.
_COUNT_TWO_MESSAGES = (
    update(ChatSession)
    .where(ChatSession.id == bindparam("session_id"))
    .values(
        message_count=ChatSession.message_count + 2,
        last_message_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    .execution_options(synchronize_session=False)
)


def session_not_found() -> Problem:
    return Problem(404, "session-not-found", "No such session.")


@dataclass(frozen=True, slots=True)
class MessagePair:
    user_message: Message
    ai_message: Message
    # False when an idempotency key matched an earlier post: nothing new was stored.
    created: bool


class ChatService:
    def __init__(self, session: AsyncSession, user_id: UUID, cursor_key: bytes) -> None:
        self.session = session
        self.user_id = user_id
        self.cursor_key = cursor_key

    # --- Sessions -----------------------------------------------------------------------------

    async def get_session(self, session_id: UUID, *, with_related: bool = False) -> ChatSession:
        query = _OWN_SESSION
        if with_related:
            # One statement for the session, its profile and its tone.
            query = query.options(joinedload(ChatSession.profile), joinedload(ChatSession.tone))
        chat = await self.session.scalar(query, {"session_id": session_id, "user_id": self.user_id})
        if chat is None:
            raise session_not_found()
        return chat

    async def list_sessions(
        self, cursor: str | None, limit: int
    ) -> tuple[list[ChatSession], str | None]:
        """One page, most recently active first, ordered by (updated_at desc, id)."""
        query = select(ChatSession).where(ChatSession.user_id == self.user_id)
        return await newest_first(
            self.session,
            query,
            ChatSession.updated_at,
            ChatSession.id,
            key=self.cursor_key,
            kind=SESSIONS_CURSOR,
            cursor=cursor,
            limit=limit,
        )

    async def _check_profile(self, profile_id: UUID) -> None:
        owned = await self.session.scalar(
            select(
                exists().where(
                    TargetProfile.id == profile_id, TargetProfile.user_id == self.user_id
                )
            )
        )
        if not owned:
            raise profile_not_found()

    async def _check_tone(self, tone_id: UUID) -> None:
        usable = await self.session.scalar(
            select(exists().where(Tone.id == tone_id, Tone.is_active.is_(True)))
        )
        if not usable:
            raise Problem(404, "tone-not-found", "No such tone, or it is no longer offered.")

    async def _check_references(self, values: dict[str, Any]) -> None:
        if values.get("profile_id") is not None:
            await self._check_profile(values["profile_id"])
        if values.get("tone_id") is not None:
            await self._check_tone(values["tone_id"])

    async def create_session(self, values: dict[str, Any]) -> ChatSession:
        await self._check_references(values)
        chat = ChatSession(user_id=self.user_id, **values)
        self.session.add(chat)
        await self.session.flush()
        return chat

    async def update_session(self, session_id: UUID, changes: dict[str, Any]) -> ChatSession:
        chat = await self.get_session(session_id)
        await self._check_references(changes)
        for name, value in changes.items():
            setattr(chat, name, value)
        await self.session.flush()
        return chat

    async def delete_session(self, session_id: UUID) -> None:
        """Delete the session; its messages and events go with it (ON DELETE CASCADE)."""
        await self.session.delete(await self.get_session(session_id))
        await self.session.flush()

    # --- Messages -----------------------------------------------------------------------------

    async def message_page(
        self, session_id: UUID, before: str | None, limit: int
    ) -> tuple[list[Message], str | None]:
        """Messages older than ``before``, newest first, by (created_at, id) descending.

        The caller has already checked that the session is the caller's.
        """
        query = select(Message).where(Message.session_id == session_id)
        return await newest_first(
            self.session,
            query,
            Message.created_at,
            Message.id,
            key=self.cursor_key,
            kind=MESSAGES_CURSOR,
            cursor=before,
            limit=limit,
            ids_descending=True,
        )

    async def post_message(
        self, session_id: UUID, content: str, idempotency_key: str | None
    ) -> MessagePair:
        """Store the user's message and the queued AI message, and count both on the session.

        With an idempotency key, the insert goes through the unique (session_id, idempotency_key)
        index with ON CONFLICT DO NOTHING: of two concurrent posts with one key, the second waits
        for the first to commit, inserts nothing and returns the first one's pair.
        """
        await self.get_session(session_id)
        now = utcnow()
        # Each INSERT returns its whole row as an entity: no read-back afterwards.
        user_message = await self.session.scalar(
            _INSERT_USER_MESSAGE,
            {
                "id": uuid7(),
                "session_id": session_id,
                "content": content,
                "idempotency_key": idempotency_key,
                "now": now,
            },
        )
        if user_message is None:
            return await self._replay(session_id, idempotency_key)
        ai_message = await self.session.scalar(
            _INSERT_AI_MESSAGE,
            {"id": uuid7(), "session_id": session_id, "reply_to_id": user_message.id, "now": now},
        )
        await self.session.execute(_COUNT_TWO_MESSAGES, {"session_id": session_id, "now": now})
        if ai_message is None:  # pragma: no cover - a plain INSERT ... RETURNING returns its row
            raise RuntimeError("AI message insert returned no row")
        return MessagePair(user_message, ai_message, created=True)

    async def _replay(self, session_id: UUID, idempotency_key: str | None) -> MessagePair:
        user_message = await self.session.scalar(
            select(Message).where(
                Message.session_id == session_id, Message.idempotency_key == idempotency_key
            )
        )
        if user_message is None:  # pragma: no cover - the conflicting row committed before us
            raise RuntimeError("idempotency key conflicted but its message is missing")
        ai_message = await self.session.scalar(
            select(Message)
            .where(Message.reply_to_id == user_message.id, Message.sender == MessageSender.AI)
            .order_by(Message.created_at, Message.id)
            .limit(1)
        )
        if ai_message is None:  # pragma: no cover - stored in the same transaction
            raise RuntimeError("idempotent user message has no AI message")
        return MessagePair(user_message, ai_message, created=False)

    # --- Events -------------------------------------------------------------------------------

    async def add_event(
        self, session_id: UUID, type_: str, message_id: UUID | None, payload: dict[str, Any]
    ) -> SessionEvent:
        await self.get_session(session_id)
        if message_id is not None:
            in_session = await self.session.scalar(
                select(exists().where(Message.id == message_id, Message.session_id == session_id))
            )
            if not in_session:
                raise Problem(404, "message-not-found", "No such message in this session.")
        event = SessionEvent(
            session_id=session_id,
            user_id=self.user_id,
            message_id=message_id,
            type=type_,
            payload=payload,
        )
        self.session.add(event)
        await self.session.flush()
        return event
