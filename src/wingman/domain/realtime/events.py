"""The per-user event stream: numbered, kept for a while, fanned out through Redis pub/sub.

Any process (web worker, SAQ worker) publishes with :meth:`EventBus.publish`. One Lua script on
the queue-role Redis (``noeviction``: an event is never silently dropped to make room) does the
whole step atomically:

1. ``INCR`` the user's sequence: the ``event_id``, monotonically increasing per user whichever
   process publishes (and across a loss of the sequence: see below);
2. adds the finished frame to the user's history (a sorted set scored by event id, trimmed to the
   newest ``history_size`` frames and dropped ``history_seconds`` after the user's last event);
3. ``PUBLISH``es the frame on the user's channel, :func:`user_channel`, where every WebSocket of
   that user, on any web worker, receives it.

*Numbering that survives a Redis that lost its data.* When the script finds the user's
sequence missing (a new user, a sequence expired after :data:`SEQUENCE_TTL_SECONDS` of silence,
or a queue Redis that was flushed or restarted without its files) it starts it at the Redis
server's clock in microseconds (about 1.7e15 in 2025, below 2**53, so JavaScript clients keep
exact integers until the 2250s), not at 1. Every id issued before was smaller, unless a user
published more than one event per microsecond on average since their sequence started: a client
can never be handed a recycled id. So a new id is never mistaken for one a client already has,
nothing is skipped as "already delivered", and a gap shows as a jump that the socket turns into
``resync_required`` (:mod:`.connection`). This was chosen over an epoch stored next to the
counter because clients keep one number, as before; the cost is that ids are large and jump
(they still increase by exactly one between two events of an unbroken sequence). The one thing
that defeats it is the Redis host's clock stepping back further than the events published since
the previous start, which the history-gap check in :meth:`EventBus.replay` still catches for
``resume``.

A frame is the JSON object ``{"event_id": 7, "type": "message.delta", "at": "<RFC 3339>",
"data": {...}}``, encoded once here and sent as is to every socket. The server publishes the
typed events of :mod:`.event_frames` (:meth:`EventBus.publish_event`), whose Structs the
AsyncAPI document is generated from.

*A reply's last event: at least once, never twice.* ``message.completed`` and
``message.failed`` follow a committed row, and a client that never gets one keeps waiting while
its event ids show no gap. :meth:`EventBus.publish_final` therefore keeps trying while Redis is
unreachable (a Sentinel failover takes seconds), and a reply job that runs again after its worker
died between the commit and the publish announces the finished message again
(``domain/ai/generation``). Both are safe because the script takes an optional third key, the
message's :func:`final_key`: when it exists the event was already numbered and published, and the
script returns that id without publishing; otherwise it publishes and sets the key for
``history_seconds`` (a finished message never changes again, so one key per message suffices, and
past that window a client that missed the event resyncs over REST anyway).

:meth:`EventBus.replay` serves ``resume {last_event_id}``: every retained frame after that id, in
order, or "resync required" when some of the missed events are no longer retained (too many, too
old, or the history expired), so the client refetches over REST instead of showing a gap.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wingman.config import Settings
from wingman.server.redis import RedisClients
from wingman.server.redis_mux import RedisMux

if TYPE_CHECKING:
    # Only for typing: the event Structs pull in the database models, which a process that just
    # publishes (the e2e publisher, ``wingmanctl``) should not have to import.
    from wingman.domain.realtime.event_frames import ServerEvent

log = structlog.get_logger(__name__)

KEY_PREFIX = "wingman:rt"
# Every web process's dispatcher listens here: socket evictions, account changes.
CONTROL_CHANNEL = f"{KEY_PREFIX}:control"
# The sequence outlives the history by far. After this long without any event a user's
# numbering starts again, from the clock (see above), so still above any id a client may hold.
SEQUENCE_TTL_SECONDS = 30 * 24 * 3600
# How long a reply's terminal event is tried again while Redis cannot be reached (as long as a
# job's outcome is: ``job_recovery.OUTCOME_RETRY_S``), and the longest wait between two tries.
FINAL_RETRY_S = 45.0
FINAL_BACKOFF_MAX_S = 2.0
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)

_PUBLISH = """
if KEYS[3] then
  local sent = redis.call('GET', KEYS[3])
  if sent then return tonumber(sent) end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], now[1] .. string.format('%06d', tonumber(now[2])))
end
local id = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local frame = '{"event_id":' .. string.format('%d', id) .. ',' .. string.sub(ARGV[2], 2)
redis.call('ZADD', KEYS[2], id, frame)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[3]) + 1))
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], frame)
if KEYS[3] then redis.call('SET', KEYS[3], id, 'EX', ARGV[4]) end
return id
"""


def user_channel(user_id: UUID) -> str:
    """The Redis pub/sub channel that carries ``user_id``'s frames."""
    return f"{KEY_PREFIX}:user:{user_id}"


def _sequence_key(user_id: UUID) -> str:
    return f"{KEY_PREFIX}:seq:{user_id}"


def history_key(user_id: UUID) -> str:
    """The sorted set of a user's retained frames, scored by event id."""
    return f"{KEY_PREFIX}:history:{user_id}"


def final_key(message_id: UUID) -> str:
    """Set once a message's terminal event is published: the event id it was given."""
    return f"{KEY_PREFIX}:final:{message_id}"


def user_keys(user_id: UUID) -> tuple[str, str]:
    """Every key holding ``user_id``'s events: numbering and history (an account's purge)."""
    return _sequence_key(user_id), history_key(user_id)


class Frame(msgspec.Struct, kw_only=True):
    """A decoded frame (what a client receives)."""

    event_id: int
    type: str
    at: datetime
    data: dict[str, Any]


class _Unnumbered(msgspec.Struct, kw_only=True):
    type: str
    at: datetime
    data: Any


_encoder = msgspec.json.Encoder()
_frame_decoder = msgspec.json.Decoder(Frame)


def _type_of(event: ServerEvent) -> str:
    """The event's ``type`` on the wire: its Struct's tag."""
    return str(event.__struct_config__.tag)


def decode_frame(raw: bytes | str) -> Frame:
    return _frame_decoder.decode(raw)


@dataclass(frozen=True, slots=True)
class Replay:
    """Answer to ``resume``: the missed frames in order, or a request to resync over REST."""

    frames: list[bytes]
    resync_required: bool


class EventBus:
    """Publishes and replays one user's events; one instance per process, safe to share."""

    def __init__(
        self,
        redis: Redis,
        *,
        history_size: int,
        history_seconds: int,
        mux: RedisMux | None = None,
    ) -> None:
        if history_size < 1 or history_seconds < 1:
            raise ValueError("history_size and history_seconds must be at least 1")
        self._redis = redis
        self._history_size = history_size
        self._history_seconds = history_seconds
        # Publishing is the call made per message posted and per streamed delta: it goes through
        # the process's pipelined connection to the same server when there is one
        # (server/redis_mux.py); replay and the rest through redis-py.
        self._mux = mux
        self._script = redis.register_script(_PUBLISH)

    @property
    def redis(self) -> Redis:
        return self._redis

    async def publish_event(self, user_id: UUID, event: ServerEvent) -> int:
        """Number, keep and fan out one event; returns its ``event_id``."""
        return await self.publish(user_id, _type_of(event), event.data)

    async def publish_event_quietly(self, user_id: UUID, event: ServerEvent) -> None:
        """Publish, or log and go on when Redis fails: for events that follow a committed change,
        where the stored rows are the truth and a client that misses the event refetches."""
        try:
            await self.publish_event(user_id, event)
        except RedisError as exc:
            # ``event_type``: structlog's first argument is already called ``event``.
            log.warning("event_publish_failed", event_type=_type_of(event), error=str(exc))

    def still_resumable(self, at: datetime) -> bool:
        """Whether an event of ``at`` is within the history's time window: a terminal event
        published then is still remembered (:func:`final_key`), so publishing it again is safe."""
        return datetime.now(UTC) - at < timedelta(seconds=self._history_seconds)

    async def publish_final(
        self,
        user_id: UUID,
        message_id: UUID,
        event: ServerEvent,
        *,
        keep_trying_s: float = FINAL_RETRY_S,
    ) -> None:
        """Publish a message's terminal event once: again and again while Redis cannot be
        reached, for up to ``keep_trying_s`` (0: one try), and never a second time once it was
        published (see above), so calling it again for the same message is always safe.
        A failure that remains is logged, as in :meth:`publish_event_quietly`."""
        deadline = time.monotonic() + keep_trying_s
        pause = 0.1
        tries = 0
        while True:
            tries += 1
            try:
                await self.publish(user_id, _type_of(event), event.data, once=final_key(message_id))
            except _UNREACHABLE as exc:
                if time.monotonic() + pause <= deadline:
                    await asyncio.sleep(pause)
                    pause = min(FINAL_BACKOFF_MAX_S, pause * 2)
                    continue
                error = str(exc)
            except RedisError as exc:
                error = str(exc)
            else:
                if tries > 1:
                    log.info("final_event_published", event_type=_type_of(event), tries=tries)
                return
            log.warning(
                "event_publish_failed", event_type=_type_of(event), tries=tries, error=error
            )
            return

    async def publish(
        self, user_id: UUID, type_: str, data: Any, *, once: str | None = None
    ) -> int:
        """Number, keep and fan out a frame of any ``type`` and ``data``: the bus itself, below
        the typed events (tests of the transport use it; the server uses :meth:`publish_event`).
        With ``once`` (a :func:`final_key`), a frame already published under that key is not
        published again: its event id is returned instead."""
        body = _encoder.encode(_Unnumbered(type=type_, at=datetime.now(UTC), data=data))
        keys = [_sequence_key(user_id), history_key(user_id)]
        if once is not None:
            keys.append(once)
        args: list[str | bytes | int] = [
            user_channel(user_id),
            body,
            self._history_size,
            self._history_seconds,
            SEQUENCE_TTL_SECONDS,
        ]
        if self._mux is not None:
            event_id = await self._mux.evalsha(_PUBLISH, keys, args)
        else:
            event_id = await self._script(keys=keys, args=args)
        return int(event_id)

    async def last_event_id(self, user_id: UUID) -> int:
        """The newest event id issued to ``user_id`` (0 when none is remembered)."""
        value = await self._redis.get(_sequence_key(user_id))
        return int(value) if value is not None else 0

    async def replay(self, user_id: UUID, last_event_id: int) -> Replay:
        """Every retained frame after ``last_event_id``, oldest first.

        ``resync_required`` when the client cannot be brought up to date from the history: the
        first missed event was trimmed or has aged out, the numbering started again above the
        client's id (the sequence was lost), or the client's id is ahead of the sequence (the
        sequence was lost and nothing has been published since).
        """
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(_sequence_key(user_id))
            pipe.zrangebyscore(history_key(user_id), f"({last_event_id}", "+inf", withscores=True)
            raw_sequence, rows = await pipe.execute()
        newest = int(raw_sequence) if raw_sequence is not None else 0
        if last_event_id == newest:
            return Replay([], resync_required=False)
        if last_event_id > newest:
            return Replay([], resync_required=True)
        oldest_allowed = datetime.now(UTC) - timedelta(seconds=self._history_seconds)
        frames: list[bytes] = []
        expected = last_event_id + 1
        for frame, score in rows:
            if int(score) != expected or decode_frame(frame).at < oldest_allowed:
                return Replay([], resync_required=True)
            frames.append(frame)
            expected += 1
        if expected != newest + 1:
            return Replay([], resync_required=True)
        return Replay(frames, resync_required=False)


def event_bus(settings: Settings, redis: RedisClients) -> EventBus:
    """The process's bus, on the queue-role Redis (which never evicts)."""
    return EventBus(
        redis.queue,
        history_size=settings.realtime.history_size,
        history_seconds=settings.realtime.history_seconds,
        mux=redis.queue_mux,
    )
