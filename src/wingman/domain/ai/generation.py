"""One run of ``generate_reply``: claim the AI message, stream the reply, store it once.

Exactly one reply per AI message, whatever crashes or retries happen, rests on PostgreSQL:

- **Claim.** A run moves the message to ``processing`` with a fresh ``run_id`` (a fencing token)
  and counts an attempt, only while the message is still in flight and under its attempt budget.
  SAQ's job key (the message id) keeps two live jobs for one message from existing at once; a
  retried or re-enqueued job may take over a ``processing`` message whose run died.
- **Stream.** Text is held in memory and published as coalesced ``message.delta`` events, each
  with the character ``offset`` it starts at. A provider retry starts again from offset 0, so a
  client that writes ``text`` at ``offset`` never shows doubled text.
- **Store.** The finished text, model, token counts and latency are written in one UPDATE that
  matches only ``run_id`` and ``processing``: a superseded run or a cancelled message writes
  nothing. Then ``message.completed`` (or ``message.failed``) is published, tried again while
  Redis is unreachable; a run that finds its message already finished (its worker died between
  the commit and that publish, and SAQ ran the job again) publishes it again. The bus publishes a
  message's terminal event at most once (``EventBus.publish_final``), so both are safe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import structlog
from sqlalchemy import Row, Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from uuid_utils.compat import uuid7

from wingman.config import AiSettings
from wingman.db.direct import DirectStatement
from wingman.db.models import (
    IN_FLIGHT_STATUSES,
    ChatSession,
    Message,
    MessageSender,
    ProcessingStatus,
    utcnow,
)
from wingman.domain.ai.prompt import build_request, load_context
from wingman.domain.ai.provider import (
    PermanentProviderError,
    Provider,
    ProviderError,
    ReplyRequest,
    TextDelta,
    TransientProviderError,
    Usage,
)
from wingman.domain.catalog.cache import CatalogCache
from wingman.domain.catalog.registry import AiConfig
from wingman.domain.catalog.services import config_value
from wingman.domain.chat.schemas import message_out
from wingman.domain.realtime.event_frames import (
    MessageCompleted,
    MessageDelta,
    MessageDeltaData,
    MessageFailed,
)
from wingman.domain.realtime.events import EventBus
from wingman.server.metrics import (
    AI_FAILURES,
    AI_FIRST_TOKEN,
    AI_PROVIDER_DURATION,
    AI_REPLIES,
    AI_TOKENS,
)

log = structlog.get_logger(__name__)

# A mapped class's table is typed as any FromClause; it is this Table.
_MESSAGES = cast(Table, Message.__table__)
# A reply's statements are built once, with bound parameters, as the web's hot routes are: built
# per reply, coercing every comparison and value into SQL elements and computing each new
# statement's cache key showed throughout the AI worker's profile under load. They work on the
# table and return the row's columns, not ORM entities: the ORM's bulk-update path and entity
# loading were the larger part of a claim's or store's cost (about 0.8 ms against 0.6). The driver
# runs them (db/direct.py).
_CLAIM = DirectStatement(
    update(_MESSAGES)
    .where(
        _MESSAGES.c.id == bindparam("message_id"),
        _MESSAGES.c.sender == MessageSender.AI,
        # Not IN (...): a direct statement is one fixed SQL string.
        or_(*(_MESSAGES.c.processing_status == status for status in IN_FLIGHT_STATUSES)),
        _MESSAGES.c.attempts < bindparam("max_attempts"),
    )
    .values(
        processing_status=ProcessingStatus.PROCESSING,
        attempts=_MESSAGES.c.attempts + 1,
        run_id=bindparam("this_run"),
        updated_at=bindparam("now"),
    )
    .returning(*_MESSAGES.c)
)
# The run's own claim still holds: nobody else has taken or finished the message since.
_FENCED = update(_MESSAGES).where(
    _MESSAGES.c.id == bindparam("message_id"),
    _MESSAGES.c.run_id == bindparam("this_run"),
    _MESSAGES.c.processing_status == ProcessingStatus.PROCESSING,
)
_STORE = DirectStatement(
    _FENCED.values(
        content=bindparam("new_content"),
        model=bindparam("new_model"),
        tokens_in=bindparam("new_tokens_in"),
        tokens_out=bindparam("new_tokens_out"),
        latency_ms=bindparam("new_latency_ms"),
        processing_status=ProcessingStatus.DONE,
        error=None,
        failure_detail=None,
        completed_at=bindparam("now"),
        updated_at=bindparam("now"),
    ).returning(*_MESSAGES.c)
)
_FAIL = DirectStatement(
    _FENCED.values(
        processing_status=ProcessingStatus.FAILED,
        error=bindparam("new_error"),
        failure_detail=bindparam("new_failure_detail"),
        completed_at=bindparam("now"),
        updated_at=bindparam("now"),
    ).returning(*_MESSAGES.c)
)


# What users are told; the provider's own words stay in ``failure_detail`` and the logs.
UNAVAILABLE = "The AI service is busy or unreachable right now. Please try again."
REFUSED = "The AI service could not write a reply to this message."
GAVE_UP = "No reply could be produced after several attempts. Please try again."


@dataclass(frozen=True, slots=True)
class Providers:
    offline: Provider
    # None until ``ai.openai.base_url`` is set.
    openai: Provider | None

    def pick(self, name: str) -> Provider:
        if name == "offline":
            return self.offline
        if self.openai is None:
            raise PermanentProviderError(
                "not_configured",
                "global config selects the openai provider, but "
                "ai.openai.base_url is not set in the settings",
            )
        return self.openai


@dataclass(slots=True)
class ReplyDeps:
    """What runs need, built once per ``ai`` worker process."""

    settings: AiSettings
    db_sessions: async_sessionmaker[AsyncSession]
    # Sessions over the autocommit engine, for the one-statement store and fail.
    autocommit_sessions: async_sessionmaker[AsyncSession]
    catalog: CatalogCache
    events: EventBus
    providers: Providers
    # Called after every committed state change of an AI message, with its owner's id.
    on_change: Callable[[UUID], Awaitable[None]]


class DeltaCoalescer:
    """Batches text pieces into ``message.delta`` events: the first piece at once, then the
    pieces gathered so far at each tick of a clock every coalescer shares (whole multiples of
    ``interval`` on the event loop's clock), or as soon as ``max_pieces`` are waiting.

    The shared clock is for the queue Redis: every reply a worker streams flushes in the same
    turn of its event loop, so their publishes leave as one write on the pipelined connection
    (``server/redis_mux.py``) and the server runs them in one wake-up, where replies flushing at
    their own moments cost it one wake-up each (docs/performance.md, "Delta events on a shared
    clock"). A piece waits at most one interval, as before, and needs no later piece to go out.
    """

    def __init__(
        self,
        send: Callable[[int, str], Awaitable[None]],
        interval: float,
        max_pieces: int,
    ) -> None:
        self._send = send
        self._interval = interval
        self._max_pieces = max(1, max_pieces)
        # Sends one at a time, in order: a tick's send and a flush never interleave.
        self._lock = asyncio.Lock()
        self._tick: asyncio.TimerHandle | None = None
        # Ticks' sends not yet finished (one, unless a send took longer than an interval).
        self._sending: set[asyncio.Task[None]] = set()
        self.restart()

    def restart(self) -> None:
        """Start a new attempt: offsets from 0, nothing pending, no tick scheduled."""
        self._drop_tick()
        self._offset = 0
        self._pending: list[str] = []
        self._started = False

    def cancel(self) -> None:
        """The reply is abandoned: no tick, and the ticks' sends in flight are cancelled."""
        self._drop_tick()
        for task in self._sending:
            task.cancel()
        self._sending.clear()

    def _drop_tick(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    async def add(self, text: str) -> None:
        self._pending.append(text)
        if not self._started or len(self._pending) >= self._max_pieces:
            await self.flush()
        elif self._tick is None:
            loop = asyncio.get_running_loop()
            boundary = (loop.time() // self._interval + 1) * self._interval
            self._tick = loop.call_at(boundary, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        task = asyncio.ensure_future(self._send_pending())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def flush(self) -> None:
        """Send what is pending now (after a tick's send in flight)."""
        self._drop_tick()
        await self._send_pending()

    async def _send_pending(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending = []
            self._started = True
            offset = self._offset
            self._offset += len(text)
            await self._send(offset, text)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a claimed reply belongs."""

    user_id: UUID
    session_id: UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    usage: Usage
    provider: str


class ReplyRun:
    """One claim-stream-store pass over one AI message."""

    def __init__(self, deps: ReplyDeps, message_id: UUID) -> None:
        self.deps = deps
        self.message_id = message_id
        self.run_id = UUID(str(uuid7()))
        self.log = log.bind(message_id=str(message_id), run_id=str(self.run_id))
        self.target: Target | None = None

    async def execute(self) -> dict[str, Any]:
        deps = self.deps
        async with deps.db_sessions() as db:
            message = await self._claim(db)
            if message is None:
                return {"message_id": str(self.message_id), "outcome": await self._unclaimed(db)}
            config = await config_value(deps.catalog, db, "ai", AiConfig)
            context = await load_context(db, message, config.context_messages)
            await db.commit()
        self.target = Target(context.user_id, context.session_id, message.created_at)
        await deps.on_change(context.user_id)
        request = build_request(context, config)
        try:
            provider = deps.providers.pick(config.provider)
            reply = await self._stream(provider, request, config.timeout_seconds)
        except ProviderError as exc:
            friendly = UNAVAILABLE if isinstance(exc, TransientProviderError) else REFUSED
            self.log.warning("reply_failed", reason=exc.reason, detail=exc.detail)
            await self._fail(friendly, exc.detail)
            return {"message_id": str(self.message_id), "outcome": "failed", "reason": exc.reason}
        stored = await self._store(reply)
        return {"message_id": str(self.message_id), "outcome": "done" if stored else "superseded"}

    async def _claim(self, db: AsyncSession) -> Any | None:
        """The message's row, now ``processing`` under this run; None if it is not ours to run."""
        return await _CLAIM.first(
            db,
            {
                "message_id": self.message_id,
                "max_attempts": self.deps.settings.max_attempts,
                "this_run": self.run_id,
                "now": utcnow(),
            },
        )

    async def _unclaimed(self, db: AsyncSession) -> str:
        """Why the claim failed; an in-flight message over its budget is failed here."""
        given_up = await db.scalar(
            update(Message)
            .where(
                Message.id == self.message_id,
                Message.sender == MessageSender.AI,
                Message.processing_status.in_(IN_FLIGHT_STATUSES),
            )
            .values(
                processing_status=ProcessingStatus.FAILED,
                error=GAVE_UP,
                failure_detail=f"attempt budget ({self.deps.settings.max_attempts}) used up",
                run_id=None,
                completed_at=utcnow(),
                updated_at=utcnow(),
            )
            .returning(Message)
            .execution_options(synchronize_session=False)
        )
        await db.commit()
        if given_up is None:
            return await self._announce_again(db)
        user_id = await owner_of(db, given_up.session_id)
        self.log.warning("reply_given_up", attempts=given_up.attempts)
        AI_REPLIES.labels(ProcessingStatus.FAILED.value).inc()
        await self.deps.on_change(user_id)
        await self._announce(user_id, given_up)
        return "given-up"

    async def _announce_again(self, db: AsyncSession) -> str:
        """A run for a message that is no longer in flight: when it finished recently, its
        terminal event goes out again (a no-op when it was published: the run that finished it
        may have died before it could publish)."""
        row = (
            await db.execute(
                select(Message, ChatSession.user_id)
                .join(ChatSession, ChatSession.id == Message.session_id)
                .where(Message.id == self.message_id, Message.sender == MessageSender.AI)
            )
        ).first()
        if row is None:
            return "not-in-flight"
        message, user_id = row
        finished_at = message.completed_at or message.updated_at
        if message.processing_status in IN_FLIGHT_STATUSES or not (
            self.deps.events.still_resumable(finished_at)
        ):
            return "not-in-flight"
        await self._announce(UUID(str(user_id)), message)
        return "announced-again"

    async def _announce(self, user_id: UUID, message: Message | Row[Any]) -> None:
        """The terminal event of a finished message: ``message.completed`` or ``.failed``."""
        body = message_out(message)
        event = (
            MessageCompleted(data=body)
            if message.processing_status is ProcessingStatus.DONE
            else MessageFailed(data=body)
        )
        await self.deps.events.publish_final(user_id, message.id, event)

    @property
    def claimed(self) -> Target:
        if self.target is None:  # pragma: no cover - only called after a successful claim
            raise RuntimeError("the run has not claimed its message")
        return self.target

    async def _send_delta(self, offset: int, text: str) -> None:
        await self.deps.events.publish_event_quietly(
            self.claimed.user_id,
            MessageDelta(
                data=MessageDeltaData(
                    message_id=self.message_id,
                    session_id=self.claimed.session_id,
                    offset=offset,
                    text=text,
                )
            ),
        )

    async def _stream(
        self, provider: Provider, request: ReplyRequest, limit_seconds: float
    ) -> Reply:
        settings = self.deps.settings
        coalescer = DeltaCoalescer(
            self._send_delta, settings.delta_interval_ms / 1000.0, settings.delta_max_tokens
        )
        try:
            return await self._attempts(provider, request, limit_seconds, coalescer)
        finally:
            # Abandoned (cancelled, or failed for good): no delta may follow the reply's end.
            coalescer.cancel()

    async def _attempts(
        self,
        provider: Provider,
        request: ReplyRequest,
        limit_seconds: float,
        coalescer: DeltaCoalescer,
    ) -> Reply:
        settings = self.deps.settings
        for attempt in range(settings.provider_retries + 1):
            coalescer.restart()
            pieces: list[str] = []
            usage: Usage | None = None
            started = time.monotonic()
            try:
                async with asyncio.timeout(limit_seconds):
                    async for item in provider.stream(request):
                        if isinstance(item, TextDelta):
                            if not pieces:
                                AI_FIRST_TOKEN.labels(provider.name).observe(
                                    time.monotonic() - started
                                )
                            pieces.append(item.text)
                            await coalescer.add(item.text)
                        else:
                            usage = item
                await coalescer.flush()
                if usage is None:  # pragma: no cover - both providers end with a Usage
                    raise TransientProviderError("protocol", "the stream carried no usage")
                AI_PROVIDER_DURATION.labels(provider.name).observe(time.monotonic() - started)
                AI_TOKENS.labels(provider.name, "prompt").inc(usage.tokens_in)
                AI_TOKENS.labels(provider.name, "completion").inc(usage.tokens_out)
                return Reply("".join(pieces), usage, provider.name)
            except TimeoutError:
                error = TransientProviderError(
                    "timeout", f"no complete reply within {limit_seconds} s"
                )
            except TransientProviderError as exc:
                error = exc
            except PermanentProviderError as exc:
                AI_FAILURES.labels(provider.name, exc.reason).inc()
                raise
            AI_FAILURES.labels(provider.name, error.reason).inc()
            if attempt == settings.provider_retries:
                raise error
            delay = backoff(settings, attempt, error.retry_after)
            self.log.info("provider_retry", reason=error.reason, attempt=attempt + 1, delay=delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _store(self, reply: Reply) -> bool:
        now = utcnow()
        latency_ms = int((now - self.claimed.created_at).total_seconds() * 1000)
        async with self.deps.autocommit_sessions() as db:
            stored = await _STORE.first(
                db,
                {
                    **self._fence(),
                    "new_content": reply.text,
                    "new_model": reply.usage.model,
                    "new_tokens_in": reply.usage.tokens_in,
                    "new_tokens_out": reply.usage.tokens_out,
                    "new_latency_ms": latency_ms,
                    "now": now,
                },
            )
            await db.commit()
        if stored is None:
            self.log.info("reply_superseded")
            return False
        AI_REPLIES.labels(ProcessingStatus.DONE.value).inc()
        self.log.info(
            "reply_done",
            provider=reply.provider,
            tokens_out=reply.usage.tokens_out,
            latency_ms=latency_ms,
        )
        await self.deps.on_change(self.claimed.user_id)
        await self._announce(self.claimed.user_id, stored)
        return True

    async def _fail(self, error: str, detail: str) -> None:
        now = utcnow()
        async with self.deps.autocommit_sessions() as db:
            failed = await _FAIL.first(
                db,
                {
                    **self._fence(),
                    "new_error": error,
                    "new_failure_detail": detail[:2000],
                    "now": now,
                },
            )
            await db.commit()
        if failed is not None:
            AI_REPLIES.labels(ProcessingStatus.FAILED.value).inc()
            await self.deps.on_change(self.claimed.user_id)
            await self._announce(self.claimed.user_id, failed)

    def _fence(self) -> dict[str, UUID]:
        """The parameters of :data:`_FENCED`: this run's message, still under its claim."""
        return {"message_id": self.message_id, "this_run": self.run_id}


def backoff(settings: AiSettings, attempt: int, retry_after: float | None) -> float:
    """Seconds before provider try ``attempt + 2``: the provider's Retry-After when it gave one,
    else exponential from ``retry_delay``; never more than ``retry_max_delay``."""
    if retry_after is not None:
        return min(retry_after, settings.retry_max_delay)
    return min(settings.retry_delay * 2.0**attempt, settings.retry_max_delay)


async def owner_of(db: AsyncSession, session_id: UUID) -> UUID:
    owner = await db.scalar(select(ChatSession.user_id).where(ChatSession.id == session_id))
    if owner is None:  # pragma: no cover - cascades delete messages with their session
        raise LookupError(f"session {session_id} is gone")
    return UUID(str(owner))
