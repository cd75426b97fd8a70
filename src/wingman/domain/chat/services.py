"""Sessions, messages and feedback events, always scoped by the caller.

Every lookup filters by the caller's user id, so another user's row is "not found" (404), never
"forbidden": the answer reveals nothing about whether the id exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Executable, Row, bindparam, exists, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from uuid_utils.compat import uuid7

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
from wingman.domain.chat.schemas import MessageOut, message_out
from wingman.domain.profiles.services import profile_not_found
from wingman.server.errors import Problem
from wingman.server.keyset import cursor_position, newest_first, page_and_cursor

SESSIONS_CURSOR = "sessions"
MESSAGES_CURSOR = "messages"

# The statements of the hot routes are built once, with bound parameters. Building them per
# call (coercing every value and comparison into SQL elements) was about a third of a post's CPU
# in a profile; the compiled forms were cached already, the construction was not.
_OWN_SESSION = select(ChatSession).where(
    ChatSession.id == bindparam("session_id"), ChatSession.user_id == bindparam("user_id")
)
# A page of messages is read as plain rows of exactly the response's fields, of the caller's
# session only, and turned into MessageOut directly. Loading ORM entities (identity map,
# instrumented attributes) and then copying them into the response took most of an uncached
# page's CPU; the ownership check rides on the same statement (a second one runs only when the
# page is empty, to tell "no messages" from "not your session"). Both pages (the first, and the
# one before a cursor's position) are whole statements built once, with the limit bound too,
# of table columns, not mapped ones: the session then runs them as Core. With mapped columns,
# compiling the ORM's state and loading the rows was a tenth of a page's web CPU, for rows of
# plain columns.
_MESSAGE_FIELDS = MessageOut.__struct_fields__
_MESSAGES = Message.__table__.c
_MESSAGE_PAGE_OF = (
    select(*(_MESSAGES[name] for name in _MESSAGE_FIELDS))
    .join(ChatSession.__table__, ChatSession.__table__.c.id == _MESSAGES.session_id)
    .where(
        _MESSAGES.session_id == bindparam("session_id"),
        ChatSession.__table__.c.user_id == bindparam("user_id"),
    )
)
# Newest first by (created_at, id), read backwards along the (session_id, created_at, id) index.
_NEWEST_FIRST = (_MESSAGES.created_at.desc(), _MESSAGES.id.desc())
_MESSAGE_PAGE = _MESSAGE_PAGE_OF.order_by(*_NEWEST_FIRST).limit(bindparam("limit"))
_MESSAGE_PAGE_BEFORE = (
    _MESSAGE_PAGE_OF.where(
        tuple_(_MESSAGES.created_at, _MESSAGES.id)
        < tuple_(
            bindparam("before_at", type_=_MESSAGES.created_at.type),
            bindparam("before_id", type_=_MESSAGES.id.type),
        )
    )
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit"))
)
_OWNS_SESSION = select(
    exists().where(
        ChatSession.id == bindparam("session_id"), ChatSession.user_id == bindparam("user_id")
    )
)


def _fields_of(table: str) -> str:
    return ", ".join(f"{table}.{name}" for name in _MESSAGE_FIELDS)


# A message post is one statement, one round trip: the session's counters move (the relative
# update, under the row lock, is exact however many posts run at once, and it is the ownership
# check too: no row, no insert), the user's message is inserted unless its idempotency key was
# seen in this session, then the queued AI message answering it; both rows come back as the
# response's fields. As four statements through the ORM (a SELECT of the session, two
# INSERT ... RETURNING entities, the UPDATE) a post cost about six times the bare one-row
# endpoint per core, a tenth of its samples in the ORM's bulk-insert machinery. When no row
# comes back (not the caller's session, or a repeated idempotency key) the post rolls back and
# finds out which (:meth:`ChatService.post_message`).
_POST_MESSAGE = text(
    # Only constants are interpolated (column names, enum values); every value is bound.
    f"""
WITH owner AS (
    UPDATE chat_sessions
    SET message_count = message_count + 2, last_message_at = :now, updated_at = :now
    WHERE id = :session_id AND user_id = :user_id
    RETURNING id
), asked AS (
    INSERT INTO messages (id, session_id, sender, content, processing_status, idempotency_key,
                          created_at, updated_at, completed_at)
    SELECT :user_message_id, owner.id, '{MessageSender.USER.value}', :content,
           '{ProcessingStatus.DONE.value}', :idempotency_key, :now, :now, :now
    FROM owner
    ON CONFLICT (session_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING {_fields_of("messages")}
), answer AS (
    INSERT INTO messages (id, session_id, sender, content, processing_status, reply_to_id,
                          created_at, updated_at)
    SELECT :ai_message_id, asked.session_id, '{MessageSender.AI.value}', '',
           '{ProcessingStatus.QUEUED.value}', asked.id, :now, :now
    FROM asked
    RETURNING {_fields_of("messages")}
)
SELECT {_fields_of("asked")} FROM asked
UNION ALL
SELECT {_fields_of("answer")} FROM answer
"""  # noqa: S608
).columns(*(_MESSAGES[name] for name in _MESSAGE_FIELDS))


def _message(row: Any) -> MessageOut:
    # The statements select exactly MessageOut's fields, in its order.
    return MessageOut(*row)


def session_not_found() -> Problem:
    return Problem(404, "session-not-found", "No such session.")


@dataclass(frozen=True, slots=True)
class MessagePair:
    user_message: MessageOut
    ai_message: MessageOut
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
    ) -> tuple[list[MessageOut], str | None]:
        """Messages of the caller's session older than ``before``, newest first, by
        (created_at, id) descending; 404 when the session is not the caller's."""
        owner = {"session_id": session_id, "user_id": self.user_id}
        before_position = cursor_position(self.cursor_key, MESSAGES_CURSOR, before)
        statement, params = _MESSAGE_PAGE, {**owner, "limit": limit + 1}
        if before_position is not None:
            statement = _MESSAGE_PAGE_BEFORE
            params.update(before_at=before_position.at, before_id=before_position.id)
        rows = await self._rows(statement, params)
        if not rows and not await self.session.scalar(_OWNS_SESSION, owner):
            raise session_not_found()
        page, next_cursor = page_and_cursor(
            rows, limit, key=self.cursor_key, kind=MESSAGES_CURSOR, at="created_at", row_id="id"
        )
        return [_message(row) for row in page], next_cursor

    async def _rows(self, statement: Executable, params: dict[str, Any]) -> list[Row[Any]]:
        """The rows of a Core statement (table columns, no mapped ones): the session runs it
        straight on its connection, without the ORM's compile and loading steps, in one hop
        (``session.connection()`` and then ``execute`` on it take two: a post cost 7 % more that
        way in one run)."""
        return list((await self.session.execute(statement, params)).all())

    async def post_message(
        self, session_id: UUID, content: str, idempotency_key: str | None
    ) -> MessagePair:
        """Store the user's message and the queued AI message, and count both on the session.

        With an idempotency key, the insert goes through the unique (session_id, idempotency_key)
        index with ON CONFLICT DO NOTHING: of two concurrent posts with one key, the second waits
        for the first to commit, inserts nothing and returns the first one's pair.
        """
        rows = await self._rows(
            _POST_MESSAGE,
            {
                "session_id": session_id,
                "user_id": self.user_id,
                "user_message_id": uuid7(),
                "ai_message_id": uuid7(),
                "content": content,
                "idempotency_key": idempotency_key,
                "now": utcnow(),
            },
        )
        if not rows:
            # Nothing was inserted, but the counters may have moved: undo, then find out why.
            await self.session.rollback()
            await self.get_session(session_id)
            return await self._replay(session_id, idempotency_key)
        by_sender = {row.sender: _message(row) for row in rows}
        return MessagePair(by_sender[MessageSender.USER], by_sender[MessageSender.AI], created=True)

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
        return MessagePair(message_out(user_message), message_out(ai_message), created=False)

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
