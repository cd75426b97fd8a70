"""Sessions, messages and feedback events, always scoped by the caller.

Every lookup filters by the caller's user id, so another user's row is "not found" (404), never
"forbidden": the answer reveals nothing about whether the id exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    exists,
    insert,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from uuid_utils.compat import uuid7

from wingman.db.direct import DirectStatement
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
from wingman.domain.chat.schemas import EventOut, MessageOut, SessionOut, ToneBrief
from wingman.domain.profiles.schemas import ProfileOut
from wingman.domain.profiles.services import profile_not_found
from wingman.server.errors import Problem
from wingman.server.keyset import cursor_position, page_and_cursor

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
# of table columns, not mapped ones, and run on the driver connection (db/direct.py). With
# mapped columns, compiling the ORM's state and loading the rows was a tenth of a page's web
# CPU, for rows of plain columns.
_MESSAGE_FIELDS = MessageOut.__struct_fields__
_MESSAGES = Message.__table__.c
_MESSAGE_COLUMNS = tuple(_MESSAGES[name] for name in _MESSAGE_FIELDS)
_MESSAGE_PAGE_OF = (
    select(*_MESSAGE_COLUMNS)
    .join(ChatSession.__table__, ChatSession.__table__.c.id == _MESSAGES.session_id)
    .where(
        _MESSAGES.session_id == bindparam("session_id"),
        ChatSession.__table__.c.user_id == bindparam("user_id"),
    )
)
# Newest first by (created_at, id), read backwards along the (session_id, created_at, id) index.
_NEWEST_FIRST = (_MESSAGES.created_at.desc(), _MESSAGES.id.desc())
_MESSAGE_PAGE = DirectStatement(_MESSAGE_PAGE_OF.order_by(*_NEWEST_FIRST).limit(bindparam("limit")))
_MESSAGE_PAGE_BEFORE = DirectStatement(
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

# A session's own fields, its profile's and its tone's brief, in one row (outer joins: either
# may be unset), read as table columns straight into the response's structs, like the page.
_SESSIONS = ChatSession.__table__.c
_PROFILES = TargetProfile.__table__.c
_TONES = Tone.__table__.c
_SESSION_COLUMNS = tuple(_SESSIONS[name] for name in SessionOut.__struct_fields__)
_PROFILE_COLUMNS = tuple(
    _PROFILES[name].label(f"profile_{name}") for name in ProfileOut.__struct_fields__
)
_TONE_COLUMNS = tuple(_TONES[name].label(f"tone_{name}") for name in ToneBrief.__struct_fields__)
_SESSION_WITH_RELATED = DirectStatement(
    select(*_SESSION_COLUMNS, *_PROFILE_COLUMNS, *_TONE_COLUMNS)
    .select_from(
        ChatSession.__table__.outerjoin(
            TargetProfile.__table__, _PROFILES.id == _SESSIONS.profile_id
        ).outerjoin(Tone.__table__, _TONES.id == _SESSIONS.tone_id)
    )
    .where(_SESSIONS.id == bindparam("session_id"), _SESSIONS.user_id == bindparam("user_id"))
)
# The caller's sessions, most recently active first (updated_at descending, id ascending), as
# the list's fields: the first page, and the page after a cursor's position.
_SESSION_LIST_OF = select(*_SESSION_COLUMNS).where(_SESSIONS.user_id == bindparam("user_id"))
_SESSION_ORDER = (_SESSIONS.updated_at.desc(), _SESSIONS.id)
_SESSION_LIST = DirectStatement(
    _SESSION_LIST_OF.order_by(*_SESSION_ORDER).limit(bindparam("limit"))
)
_SESSION_LIST_AFTER = DirectStatement(
    _SESSION_LIST_OF.where(
        or_(
            _SESSIONS.updated_at < bindparam("after_at", type_=_SESSIONS.updated_at.type),
            and_(
                _SESSIONS.updated_at == bindparam("after_at", type_=_SESSIONS.updated_at.type),
                _SESSIONS.id > bindparam("after_id", type_=_SESSIONS.id.type),
            ),
        )
    )
    .order_by(*_SESSION_ORDER)
    .limit(bindparam("limit"))
)
# Feedback is one INSERT ... SELECT: the row is written only if the session is the caller's and
# the message (when one is named) is in that session, and comes back as the response's fields.
# No row back means one of the two is missing; :meth:`ChatService.add_event` then finds which.
_EVENTS = SessionEvent.__table__.c
_ADD_EVENT = DirectStatement(
    insert(cast(Table, SessionEvent.__table__))
    .from_select(
        ["id", "session_id", "user_id", "message_id", "type", "payload", "created_at"],
        select(
            bindparam("event_id", type_=_EVENTS.id.type),
            _SESSIONS.id,
            _SESSIONS.user_id,
            bindparam("message_id", type_=_EVENTS.message_id.type),
            bindparam("type", type_=_EVENTS.type.type),
            bindparam("payload", type_=_EVENTS.payload.type),
            bindparam("now", type_=_EVENTS.created_at.type),
        ).where(
            _SESSIONS.id == bindparam("session_id"),
            _SESSIONS.user_id == bindparam("user_id"),
            or_(
                bindparam("message_id", type_=_EVENTS.message_id.type).is_(None),
                exists().where(
                    _MESSAGES.id == bindparam("message_id", type_=_MESSAGES.id.type),
                    _MESSAGES.session_id == _SESSIONS.id,
                ),
            ),
        ),
    )
    .returning(*(_EVENTS[name] for name in EventOut.__struct_fields__))
)


def _fields_of(table: str) -> str:
    return ", ".join(f"{table}.{name}" for name in _MESSAGE_FIELDS)


# A message post is one statement, one round trip, and it commits by itself (autocommit): the
# session is locked if it is the caller's (the ownership check: no row, no insert; a concurrent
# delete is waited for and then finds none), the user's message is inserted unless its
# idempotency key was seen in this session, then the queued AI message answering it, and the
# session's counters move by the rows actually inserted (the relative update is exact however
# many posts run at once). Both rows come back as the response's fields. When none comes back
# (not the caller's session, or a repeated idempotency key) nothing changed, and
# :meth:`ChatService.post_message` finds out which. As four statements through the ORM in a
# transaction a post cost about six times the bare one-row endpoint per core.
_POST_MESSAGE = DirectStatement(
    text(
        # Only constants are interpolated (column names, enum values); every value is bound.
        f"""
WITH owner AS (
    SELECT id FROM chat_sessions
    WHERE id = :session_id AND user_id = :user_id
    FOR NO KEY UPDATE
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
), counted AS (
    UPDATE chat_sessions
    SET message_count = message_count + 2, last_message_at = :now, updated_at = :now
    WHERE id IN (SELECT session_id FROM asked)
)
SELECT {_fields_of("asked")} FROM asked
UNION ALL
SELECT {_fields_of("answer")} FROM answer
"""  # noqa: S608
    ).columns(*_MESSAGE_COLUMNS)
)
# A post repeated with its idempotency key answers with the pair the first one stored.
_ASKED = DirectStatement(
    select(*_MESSAGE_COLUMNS).where(
        _MESSAGES.session_id == bindparam("session_id"),
        _MESSAGES.idempotency_key == bindparam("idempotency_key"),
    )
)
_ANSWER = DirectStatement(
    select(*_MESSAGE_COLUMNS)
    .where(_MESSAGES.reply_to_id == bindparam("asked_id"), _MESSAGES.sender == MessageSender.AI)
    .order_by(_MESSAGES.created_at, _MESSAGES.id)
    .limit(1)
)


# The statements select exactly each struct's fields, in its order.
def _session(row: Any) -> SessionOut:
    return SessionOut(*row)


def _event(row: Any) -> EventOut:
    return EventOut(*row)


def _profile(row: Any) -> ProfileOut:
    return ProfileOut(*row)


def _message(row: Any) -> MessageOut:
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
    """The caller's sessions, messages and events on ``db``: the request's ORM session, or for
    reads and one-statement writes a connection of the autocommit engine (an ORM session
    around it would cost about 120 µs of client CPU a use, for nothing it does)."""

    def __init__(
        self, db: AsyncSession | AsyncConnection, user_id: UUID, cursor_key: bytes
    ) -> None:
        self.db = db
        self.user_id = user_id
        self.cursor_key = cursor_key

    @property
    def _orm(self) -> AsyncSession:
        if not isinstance(self.db, AsyncSession):
            raise TypeError("creating, changing or deleting a session needs an ORM session")
        return self.db

    # --- Sessions -----------------------------------------------------------------------------

    async def get_session(self, session_id: UUID) -> ChatSession:
        chat = await self._orm.scalar(
            _OWN_SESSION, {"session_id": session_id, "user_id": self.user_id}
        )
        if chat is None:
            raise session_not_found()
        return chat

    async def _check_owned(self, session_id: UUID) -> None:
        """404 unless the session is the caller's."""
        owner = {"session_id": session_id, "user_id": self.user_id}
        if not await self.db.scalar(_OWNS_SESSION, owner):
            raise session_not_found()

    async def session_with_related(
        self, session_id: UUID
    ) -> tuple[SessionOut, ProfileOut | None, ToneBrief | None]:
        """The caller's session with its profile and its tone's brief (None where unset), in one
        statement; 404 when the session is not the caller's."""
        rows = await self._rows(
            _SESSION_WITH_RELATED, {"session_id": session_id, "user_id": self.user_id}
        )
        if not rows:
            raise session_not_found()
        row = rows[0]
        sessions, profiles = len(_SESSION_COLUMNS), len(_PROFILE_COLUMNS)
        profile = row[sessions : sessions + profiles]
        tone = row[sessions + profiles :]
        return (
            _session(row[:sessions]),
            None if profile[0] is None else _profile(profile),
            None if tone[0] is None else ToneBrief(*tone),
        )

    async def list_sessions(
        self, cursor: str | None, limit: int
    ) -> tuple[list[SessionOut], str | None]:
        """One page, most recently active first, ordered by (updated_at desc, id)."""
        after = cursor_position(self.cursor_key, SESSIONS_CURSOR, cursor)
        statement, params = _SESSION_LIST, {"user_id": self.user_id, "limit": limit + 1}
        if after is not None:
            statement = _SESSION_LIST_AFTER
            params.update(after_at=after.at, after_id=after.id)
        sessions = [_session(row) for row in await self._rows(statement, params)]
        return page_and_cursor(
            sessions, limit, key=self.cursor_key, kind=SESSIONS_CURSOR, at="updated_at", row_id="id"
        )

    async def _check_profile(self, profile_id: UUID) -> None:
        owned = await self.db.scalar(
            select(
                exists().where(
                    TargetProfile.id == profile_id, TargetProfile.user_id == self.user_id
                )
            )
        )
        if not owned:
            raise profile_not_found()

    async def _check_tone(self, tone_id: UUID) -> None:
        usable = await self.db.scalar(
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
        self._orm.add(chat)
        await self._orm.flush()
        return chat

    async def update_session(self, session_id: UUID, changes: dict[str, Any]) -> ChatSession:
        chat = await self.get_session(session_id)
        await self._check_references(changes)
        for name, value in changes.items():
            setattr(chat, name, value)
        await self._orm.flush()
        return chat

    async def delete_session(self, session_id: UUID) -> None:
        """Delete the session; its messages and events go with it (ON DELETE CASCADE)."""
        await self._orm.delete(await self.get_session(session_id))
        await self._orm.flush()

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
        messages = [_message(row) for row in await self._rows(statement, params)]
        if not messages:
            await self._check_owned(session_id)
        return page_and_cursor(
            messages, limit, key=self.cursor_key, kind=MESSAGES_CURSOR, at="created_at", row_id="id"
        )

    async def _rows(
        self, statement: DirectStatement, params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """The rows of a hot statement, run on ``db``'s connection by the driver."""
        return await statement.rows(self.db, params)

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
            # Nothing was inserted and nothing counted: find out why.
            await self._check_owned(session_id)
            return await self._replay(session_id, idempotency_key)
        by_sender = {message.sender: message for message in map(_message, rows)}
        return MessagePair(by_sender[MessageSender.USER], by_sender[MessageSender.AI], created=True)

    async def _replay(self, session_id: UUID, idempotency_key: str | None) -> MessagePair:
        asked = await _ASKED.first(
            self.db, {"session_id": session_id, "idempotency_key": idempotency_key}
        )
        if asked is None:  # pragma: no cover - the conflicting row committed before us
            raise RuntimeError("idempotency key conflicted but its message is missing")
        answer = await _ANSWER.first(self.db, {"asked_id": asked.id})
        if answer is None:  # pragma: no cover - stored in the same transaction
            raise RuntimeError("idempotent user message has no AI message")
        return MessagePair(_message(asked), _message(answer), created=False)

    # --- Events -------------------------------------------------------------------------------

    async def add_event(
        self, session_id: UUID, type_: str, message_id: UUID | None, payload: dict[str, Any]
    ) -> EventOut:
        rows = await self._rows(
            _ADD_EVENT,
            {
                "event_id": uuid7(),
                "session_id": session_id,
                "user_id": self.user_id,
                "message_id": message_id,
                "type": type_,
                "payload": payload,
                "now": utcnow(),
            },
        )
        if not rows:
            await self._check_owned(session_id)
            raise Problem(404, "message-not-found", "No such message in this session.")
        return _event(rows[0])
