"""Replies to messages, the web side: quotas, dispatch after commit, regenerate and cancel.

Handlers commit first and only then enqueue and publish, so a worker never sees a message that
is not yet visible. If Redis is unreachable at that moment the request still succeeds: the rows
are stored, and the reconciler enqueues the reply once its ``stale_after_seconds`` have passed.

The ``ai`` workers (``domain/ai``) meet this side only through what is named here: the
``generate_reply`` job and its key, and the channel a cancel is announced on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from saq import Queue
from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from uuid_utils.compat import uuid7

from wingman.config import Settings
from wingman.db.models import (
    IN_FLIGHT_STATUSES,
    ChatSession,
    Message,
    MessageSender,
    ProcessingStatus,
    UserTier,
    utcnow,
)
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.registry import Features, RateLimits
from wingman.domain.catalog.services import config_value
from wingman.domain.chat.schemas import MessageOut
from wingman.domain.realtime.event_frames import MessageCreated
from wingman.domain.realtime.events import EventBus
from wingman.queues import enqueue
from wingman.server.auth import AuthUser
from wingman.server.errors import Problem
from wingman.server.ratelimit import RateLimiter, RateRule

log = structlog.get_logger(__name__)

# Every ai worker process listens here (domain/ai/cancel.py) and stops the announced run.
CANCEL_CHANNEL = "wingman:ai:cancel"


def reply_job_key(message_id: UUID) -> str:
    """One key per AI message: while a job for it is queued or running, another collapses."""
    return f"reply:{message_id}"


async def enqueue_reply(queue: Queue, settings: Settings, message_id: UUID) -> bool:
    """Enqueue the reply job; False when a live job for the message already exists."""
    job = await enqueue(
        queue,
        settings,
        "generate_reply",
        key=reply_job_key(message_id),
        message_id=str(message_id),
    )
    return job is not None


async def announce_cancel(redis: Redis, message_id: UUID) -> None:
    await redis.publish(CANCEL_CHANNEL, str(message_id))


QuotaScope = Literal["chat", "ai"]


def message_not_found() -> Problem:
    return Problem(404, "message-not-found", "No such message.")


async def enforce_quota(
    limiter: RateLimiter,
    catalog: CatalogCache,
    db: AsyncSession | AsyncEngine,
    user: AuthUser,
    *scopes: QuotaScope,
) -> None:
    """Count one hit in each scope (``chat``, ``ai``) at the caller's tier, or raise a 429."""
    limits = await config_value(catalog, db, "rate_limits", RateLimits)
    premium = user.tier is UserTier.PREMIUM
    checks = [
        (
            RateRule.parse(f"{scope}:user", limits.for_tier(scope, premium).notation),
            str(user.id),
        )
        for scope in scopes
    ]
    await limiter.enforce(*checks)


@dataclass(frozen=True, slots=True)
class ReplyDispatch:
    """What happens after a commit that created messages: events, then the reply job."""

    settings: Settings
    queue: Queue
    events: EventBus

    async def created(self, user_id: UUID, messages: list[MessageOut]) -> None:
        for message in messages:
            await self.events.publish_event_quietly(user_id, MessageCreated(data=message))
        for message in messages:
            if message.sender is MessageSender.AI:
                await self.enqueue(message.id)

    async def enqueue(self, message_id: UUID) -> None:
        try:
            await enqueue_reply(self.queue, self.settings, message_id)
        except (RedisError, OSError) as exc:
            # Stored and committed: the reconciler enqueues it once Redis is back.
            log.warning("reply_enqueue_failed", message_id=str(message_id), error=str(exc))


class ReplyService:
    """Regenerate and cancel, scoped to the caller's own messages."""

    def __init__(self, db: AsyncSession, user_id: UUID) -> None:
        self.db = db
        self.user_id = user_id

    async def _owned(self, message_id: UUID) -> Message:
        message = await self.db.scalar(
            select(Message)
            .join(ChatSession, ChatSession.id == Message.session_id)
            .where(Message.id == message_id, ChatSession.user_id == self.user_id)
        )
        if message is None:
            raise message_not_found()
        return message

    async def check_regenerate_allowed(self, catalog: CatalogCache) -> None:
        features = await config_value(catalog, self.db, "features", Features)
        if not features.regenerate:
            raise Problem(403, "feature-disabled", "Regenerating replies is switched off.")

    async def regenerate(self, message_id: UUID) -> Message:
        """A new queued AI message answering the same user message; earlier replies stay."""
        message = await self._owned(message_id)
        user_message_id = (
            message.id if message.sender is MessageSender.USER else message.reply_to_id
        )
        if user_message_id is None:
            raise Problem(
                409, "reply-target-gone", "The message this reply answered has been deleted."
            )
        busy = await self.db.scalar(
            select(
                exists().where(
                    Message.reply_to_id == user_message_id,
                    Message.sender == MessageSender.AI,
                    Message.processing_status.in_(IN_FLIGHT_STATUSES),
                )
            )
        )
        if busy:
            raise Problem(
                409,
                "reply-in-progress",
                "A reply to this message is still being written; cancel it or wait for it.",
            )
        now = utcnow()
        reply = Message(
            id=uuid7(),
            session_id=message.session_id,
            sender=MessageSender.AI,
            content="",
            processing_status=ProcessingStatus.QUEUED,
            reply_to_id=user_message_id,
            created_at=now,
            updated_at=now,
        )
        self.db.add(reply)
        await self.db.execute(
            update(ChatSession)
            .where(ChatSession.id == message.session_id)
            .values(
                message_count=ChatSession.message_count + 1, last_message_at=now, updated_at=now
            )
            .execution_options(synchronize_session=False)
        )
        await self.db.flush()
        return reply

    async def cancel(self, message_id: UUID) -> Message:
        """Mark an in-flight reply ``cancelled``; a run that finishes later writes nothing."""
        message = await self._owned(message_id)
        if message.sender is not MessageSender.AI:
            raise Problem(409, "not-cancellable", "Only an AI reply can be cancelled.")
        now = utcnow()
        cancelled: Message | None = await self.db.scalar(
            update(Message)
            .where(Message.id == message.id, Message.processing_status.in_(IN_FLIGHT_STATUSES))
            .values(
                processing_status=ProcessingStatus.CANCELLED,
                run_id=None,
                completed_at=now,
                updated_at=now,
            )
            .returning(Message)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        if cancelled is None:
            raise Problem(
                409,
                "not-cancellable",
                f"The reply has already finished ({message.processing_status.value}).",
                extra={"processing_status": message.processing_status.value},
            )
        return cancelled


async def stop_running(queue_redis: Redis, message_id: UUID) -> None:
    """Tell the ``ai`` workers to stop the generation now (best effort, see ``cancel``)."""
    try:
        await announce_cancel(queue_redis, message_id)
    except (RedisError, OSError) as exc:
        log.warning("cancel_announce_failed", message_id=str(message_id), error=str(exc))
