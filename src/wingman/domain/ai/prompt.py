"""The prompt for one reply: tone, who the user is talking to, preferences and recent messages.

Three statements whatever the history length: the session with its tone and profile, the user's
settings, and the newest messages up to the reply's anchor (the user message it answers). The
history is cut to ``ai.context_messages`` messages and then to ``ai.context_tokens`` estimated
tokens, dropping the oldest first; the anchor itself is always kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import and_, bindparam, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

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


@dataclass(frozen=True, slots=True)
class PromptContext:
    """Everything a reply depends on, loaded once per run."""

    user_id: UUID
    session_id: UUID
    tone: Tone | None
    profile: TargetProfile | None
    reply_length: ReplyLength
    language: str | None
    history: list[Message]


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


def fit_history(history: list[Message], token_budget: int) -> list[Message]:
    """The newest messages (``history`` is oldest first) whose estimate fits the budget; the
    last message is kept even alone over budget."""
    kept: list[Message] = []
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
_SESSION_WITH_RELATED = (
    select(ChatSession)
    .where(ChatSession.id == bindparam("session_id"))
    .options(joinedload(ChatSession.tone), joinedload(ChatSession.profile))
)
_USER_SETTINGS = select(UserSettings).where(UserSettings.user_id == bindparam("user_id"))
_ANCHOR = select(Message.created_at, Message.id).where(Message.id == bindparam("anchor_id"))
# The conversation up to the anchor (the user message answered), newest first: what the user
# and their contacts said, and the AI replies that finished.
_HISTORY = (
    select(Message)
    .where(
        Message.session_id == bindparam("session_id"),
        Message.id != bindparam("ai_message_id"),
        tuple_(Message.created_at, Message.id)
        <= tuple_(
            bindparam("bound_at", type_=Message.__table__.c.created_at.type),
            bindparam("bound_id", type_=Message.__table__.c.id.type),
        ),
        or_(
            Message.sender.in_((MessageSender.USER, MessageSender.CONTACT)),
            and_(
                Message.sender == MessageSender.AI,
                Message.processing_status == ProcessingStatus.DONE,
            ),
        ),
    )
    .order_by(Message.created_at.desc(), Message.id.desc())
    .limit(bindparam("limit"))
)


async def load_context(
    db: AsyncSession, ai_message: Message, context_messages: int
) -> PromptContext:
    chat = await db.scalar(_SESSION_WITH_RELATED, {"session_id": ai_message.session_id})
    if chat is None:  # pragma: no cover - the message row references it (ON DELETE CASCADE)
        raise LookupError(f"session {ai_message.session_id} is gone")
    settings = await db.scalar(_USER_SETTINGS, {"user_id": chat.user_id})
    history: list[Message] = []
    if context_messages > 0:
        anchor = (
            (await db.execute(_ANCHOR, {"anchor_id": ai_message.reply_to_id})).first()
            if ai_message.reply_to_id is not None
            else None
        )
        bound_at, bound_id = anchor or (ai_message.created_at, ai_message.id)
        rows = await db.scalars(
            _HISTORY,
            {
                "session_id": chat.id,
                "ai_message_id": ai_message.id,
                "bound_at": bound_at,
                "bound_id": bound_id,
                "limit": context_messages,
            },
        )
        history = list(reversed(rows.all()))
    return PromptContext(
        user_id=chat.user_id,
        session_id=chat.id,
        tone=chat.tone,
        profile=chat.profile,
        reply_length=settings.reply_length if settings is not None else ReplyLength.MEDIUM,
        language=settings.language if settings is not None else None,
        history=history,
    )
