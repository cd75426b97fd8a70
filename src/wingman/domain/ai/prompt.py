"""The prompt for one reply: tone, who the user is talking to, preferences and recent messages.

Three statements whatever the history length: the session with its tone, profile and the user's
settings, the anchor (the user message the reply answers), and the newest messages up to it. The
history is cut to ``ai.context_messages`` messages and then to ``ai.context_tokens`` estimated
tokens, dropping the oldest first; the anchor itself is always kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol
from uuid import UUID

from sqlalchemy import and_, bindparam, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from wingman.db.direct import DirectStatement
from wingman.db.models import (
    ChatSession,
    Message,
    MessageSender,
    ProcessingStatus,
    ReplyLength,
    TargetProfile,
    Tone,
    UserSettings,
)
from wingman.domain.ai.provider import PromptMessage, ReplyRequest, Role, estimate_tokens
from wingman.domain.catalog.registry import AiConfig

LENGTH_GUIDANCE = {
    ReplyLength.SHORT: "Keep it short: one or two sentences.",
    ReplyLength.MEDIUM: "Keep it to a few sentences.",
    ReplyLength.LONG: "A longer, more detailed message is welcome.",
}


class ClaimedMessage(Protocol):
    """What the prompt needs of the AI message it is for (the claim's row)."""

    @property
    def id(self) -> UUID: ...
    @property
    def session_id(self) -> UUID: ...
    @property
    def reply_to_id(self) -> UUID | None: ...
    @property
    def created_at(self) -> datetime: ...


class ToneBrief(NamedTuple):
    slug: str
    name: str
    prompt: str


class ProfileBrief(NamedTuple):
    name: str
    notes: str | None
    interests: list[str]


class HistoryMessage(NamedTuple):
    sender: MessageSender
    content: str


@dataclass(frozen=True, slots=True)
class PromptContext:
    """Everything a reply depends on, loaded once per run."""

    user_id: UUID
    session_id: UUID
    tone: ToneBrief | None
    profile: ProfileBrief | None
    reply_length: ReplyLength
    language: str | None
    history: list[HistoryMessage]


def system_prompt(context: PromptContext) -> str:
    lines = [
        "You are Wingman, an assistant that suggests what the user could write next in a "
        "conversation. Reply with the suggested message only, written as the user, with no "
        "preamble, quotes or explanation."
    ]
    profile = context.profile
    if profile is not None:
        lines.append(f"The user is talking to {profile.name}.")
        if profile.notes:
            lines.append(f"About {profile.name}: {profile.notes}")
        if profile.interests:
            lines.append(f"{profile.name}'s interests: {', '.join(profile.interests)}.")
    if context.tone is not None:
        lines.append(f"Tone ({context.tone.name}): {context.tone.prompt}")
    lines.append(LENGTH_GUIDANCE[context.reply_length])
    if context.language:
        lines.append(f"Write in the language with the BCP 47 tag {context.language}.")
    else:
        lines.append("Write in the language of the conversation.")
    return "\n".join(lines)


def fit_history(history: list[HistoryMessage], token_budget: int) -> list[HistoryMessage]:
    """The newest messages (``history`` is oldest first) whose estimate fits the budget; the
    last message is kept even alone over budget."""
    kept: list[HistoryMessage] = []
    used = 0
    for message in reversed(history):
        cost = estimate_tokens(message.content)
        if kept and used + cost > token_budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    return kept


def build_request(context: PromptContext, config: AiConfig) -> ReplyRequest:
    messages = [PromptMessage("system", system_prompt(context))]
    for message in fit_history(context.history, config.context_tokens):
        # An imported contact's lines are context the user brings, like the user's own.
        role: Role = "assistant" if message.sender is MessageSender.AI else "user"
        messages.append(PromptMessage(role, message.content))
    return ReplyRequest(
        messages=messages,
        model=config.model,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        tone=context.tone.slug if context.tone is not None else None,
        reply_length=context.reply_length.value,
    )


# Built once, with bound parameters (see ``generation.py``).
# Table columns, not entities: loading ORM objects (and the ORM's statement handling around them)
# was the larger part of a reply's database time in the AI worker's profile.
_SESSIONS = ChatSession.__table__
_TONES = Tone.__table__
_PROFILES = TargetProfile.__table__
_SETTINGS = UserSettings.__table__
_MESSAGES = Message.__table__

# The session with its tone, profile and owner's settings: one row, outer-joined. The three
# statements are run by the driver (db/direct.py).
_SESSION_WITH_RELATED = DirectStatement(
    select(
        _SESSIONS.c.id,
        _SESSIONS.c.user_id,
        _TONES.c.slug.label("tone_slug"),
        _TONES.c.name.label("tone_name"),
        _TONES.c.prompt.label("tone_prompt"),
        _PROFILES.c.name.label("profile_name"),
        _PROFILES.c.notes.label("profile_notes"),
        _PROFILES.c.interests.label("profile_interests"),
        _SETTINGS.c.reply_length,
        _SETTINGS.c.language,
    )
    .select_from(
        _SESSIONS.outerjoin(_TONES, _TONES.c.id == _SESSIONS.c.tone_id)
        .outerjoin(_PROFILES, _PROFILES.c.id == _SESSIONS.c.profile_id)
        .outerjoin(_SETTINGS, _SETTINGS.c.user_id == _SESSIONS.c.user_id)
    )
    .where(_SESSIONS.c.id == bindparam("session_id"))
)
_ANCHOR = DirectStatement(
    select(_MESSAGES.c.created_at, _MESSAGES.c.id).where(_MESSAGES.c.id == bindparam("anchor_id"))
)
_HISTORY = DirectStatement(
    select(_MESSAGES.c.sender, _MESSAGES.c.content)
    .where(
        _MESSAGES.c.session_id == bindparam("session_id"),
        _MESSAGES.c.id != bindparam("ai_message_id"),
        tuple_(_MESSAGES.c.created_at, _MESSAGES.c.id)
        <= tuple_(
            bindparam("bound_at", type_=_MESSAGES.c.created_at.type),
            bindparam("bound_id", type_=_MESSAGES.c.id.type),
        ),
        or_(
            _MESSAGES.c.sender == MessageSender.USER,
            _MESSAGES.c.sender == MessageSender.CONTACT,
            and_(
                _MESSAGES.c.sender == MessageSender.AI,
                _MESSAGES.c.processing_status == ProcessingStatus.DONE,
            ),
        ),
    )
    .order_by(_MESSAGES.c.created_at.desc(), _MESSAGES.c.id.desc())
    .limit(bindparam("limit"))
)


async def load_context(
    db: AsyncSession, ai_message: ClaimedMessage, context_messages: int
) -> PromptContext:
    chat = await _SESSION_WITH_RELATED.first(db, {"session_id": ai_message.session_id})
    if chat is None:  # pragma: no cover - the message row references it (ON DELETE CASCADE)
        raise LookupError(f"session {ai_message.session_id} is gone")
    history: list[HistoryMessage] = []
    if context_messages > 0:
        anchor = (
            await _ANCHOR.first(db, {"anchor_id": ai_message.reply_to_id})
            if ai_message.reply_to_id is not None
            else None
        )
        bound_at, bound_id = anchor or (ai_message.created_at, ai_message.id)
        rows = await _HISTORY.rows(
            db,
            {
                "session_id": chat.id,
                "ai_message_id": ai_message.id,
                "bound_at": bound_at,
                "bound_id": bound_id,
                "limit": context_messages,
            },
        )
        history = [HistoryMessage(sender, content) for sender, content in rows]
        history.reverse()
    return PromptContext(
        user_id=chat.user_id,
        session_id=chat.id,
        tone=ToneBrief(chat.tone_slug, chat.tone_name, chat.tone_prompt)
        if chat.tone_slug is not None
        else None,
        profile=ProfileBrief(chat.profile_name, chat.profile_notes, chat.profile_interests or [])
        if chat.profile_name is not None
        else None,
        reply_length=chat.reply_length or ReplyLength.MEDIUM,
        language=chat.language,
        history=history,
    )
