"""Request and response bodies of the chat API (msgspec)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from sqlalchemy import Row

from wingman.db.models import (
    ChatSession,
    ChatSessionStatus,
    Message,
    MessageSender,
    ProcessingStatus,
    SessionEventType,
)
from wingman.domain.profiles.schemas import ProfileOut
from wingman.server.schema import Schema

# A hard ceiling on the request body only: the limit in force is global config
# ``limits.message`` (max_content_length, itself at most this), checked by the controller.
MESSAGE_CEILING_CHARS = 100_000

Title = Annotated[str, msgspec.Meta(max_length=200)]
IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
MessageContent = Annotated[str, msgspec.Meta(min_length=1, max_length=MESSAGE_CEILING_CHARS)]
EventPayload = Annotated[dict[str, Any], msgspec.Meta(max_length=50)]


class SessionIn(Schema):
    title: Title | None = None
    profile_id: UUID | None = None
    tone_id: UUID | None = None


class SessionPatch(Schema):
    """Fields left out are unchanged; ``null`` clears title, profile or tone."""

    title: Title | msgspec.UnsetType | None = msgspec.UNSET
    profile_id: UUID | msgspec.UnsetType | None = msgspec.UNSET
    tone_id: UUID | msgspec.UnsetType | None = msgspec.UNSET
    status: ChatSessionStatus | msgspec.UnsetType = msgspec.UNSET


class SessionOut(Schema):
    id: UUID
    title: str | None
    profile_id: UUID | None
    tone_id: UUID | None
    status: ChatSessionStatus
    message_count: int
    last_message_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SessionPage(Schema):
    items: list[SessionOut]
    # Pass as ``cursor`` for the next page; null on the last page.
    next_cursor: str | None


class ToneBrief(Schema):
    id: UUID
    slug: str
    name: str


class MessageOut(Schema):
    id: UUID
    session_id: UUID
    sender: MessageSender
    content: str
    processing_status: ProcessingStatus
    error: str | None
    reply_to_id: UUID | None
    idempotency_key: str | None
    created_at: datetime
    completed_at: datetime | None


class MessagePage(Schema):
    """Newest first."""

    items: list[MessageOut]
    # Pass as ``before`` for the next (older) page; null on the oldest page.
    next_cursor: str | None


class SessionDetail(Schema):
    session: SessionOut
    profile: ProfileOut | None
    tone: ToneBrief | None
    messages: MessagePage


class MessageIn(Schema):
    content: MessageContent
    idempotency_key: IdempotencyKey | None = None


class MessagePair(Schema):
    """The stored user message and the AI message that will answer it."""

    user_message: MessageOut
    ai_message: MessageOut


class EventIn(Schema):
    type: SessionEventType
    message_id: UUID | None = None
    payload: EventPayload = msgspec.field(default_factory=dict)


class EventOut(Schema):
    id: UUID
    session_id: UUID
    message_id: UUID | None
    type: str
    payload: dict[str, Any]
    created_at: datetime


def message_out(message: Message | Row[Any]) -> MessageOut:
    """From an entity, or a row of the messages table's columns."""
    return MessageOut(
        id=message.id,
        session_id=message.session_id,
        sender=message.sender,
        content=message.content,
        processing_status=message.processing_status,
        error=message.error,
        reply_to_id=message.reply_to_id,
        idempotency_key=message.idempotency_key,
        created_at=message.created_at,
        completed_at=message.completed_at,
    )


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
