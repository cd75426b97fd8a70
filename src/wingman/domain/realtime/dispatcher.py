"""One Redis subscription per web process, fanning each user's frames out to their sockets here.

Every socket of a user on this process shares one subscription to :func:`user_channel`; a single
reader task takes messages off one Redis pub/sub connection and offers each frame to the user's
sockets' bounded queues. 5,000 sockets therefore cost one Redis connection, not 5,000.

Written here rather than with Litestar's channels plugin because the WebSocket needs two things
that plugin does not give:

- *subscribed means subscribed*: :meth:`Dispatcher.attach` returns only once Redis has confirmed
  the ``SUBSCRIBE`` (the plugin returns once the command is sent). Only then may a socket read the
  history for ``resume``: an event published in between is then certainly seen, either in the
  history or live, and de-duplicated by ``event_id``;
- *overflow closes, never drops*: the plugin's per-subscriber backlog drops frames when full,
  which would leave a silent gap; here a full queue closes the socket (4008) and the client
  resumes from the history.

The process also listens on one control channel, where the per-user socket limit (shared by all
processes through a sorted set in Redis) announces the sockets it evicts and where account
changes are announced (:mod:`.account_changes`), and it runs one sweep a second over its sockets
for heartbeats and token expiry, instead of a timer task per socket.

When the pub/sub connection fails, frames may have been missed, so every socket is closed with
1013 (clients resume from the history once they reconnect) and the subscription is rebuilt.
``on_hearing`` learns when account changes start reaching the process (Redis confirmed the
control channel's ``SUBSCRIBE``) and when they stop (the connection failed, or the dispatcher
stopped): the status cache keeps entries long only while it hears the changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from wingman.domain.realtime.account_changes import AccountChange
from wingman.domain.realtime.events import CONTROL_CHANNEL, KEY_PREFIX, user_channel
from wingman.domain.realtime.protocol import (
    PING,
    AccountUpdatedData,
    AccountUpdatedFrame,
    CloseCode,
    encode_control,
)

if TYPE_CHECKING:
    from wingman.config import RealtimeSettings
    from wingman.domain.realtime.connection import Connection

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 1.0
# How long a user's socket list survives without a new socket (crashed processes leave entries).
SOCKET_LIST_TTL_SECONDS = 24 * 3600
RECONNECT_DELAY_SECONDS = 1.0

# Register one socket, and evict the user's oldest beyond the limit, atomically for all processes.
_REGISTER = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, over - 1)
  redis.call('ZREM', KEYS[1], unpack(oldest))
  redis.call('PUBLISH', ARGV[5], cjson.encode(oldest))
  return oldest
end
return {}
"""

# The control channel carries a list of evicted socket ids, or an account change.
_control = msgspec.json.Decoder(list[str] | AccountChange)
# How long a process refuses sockets of an account announced as no longer active: longer than a
# socket can take from its status check to its subscription.
REFUSE_SECONDS = 60.0


class RealtimeUnavailable(Exception):
    """Redis could not be reached or the dispatcher is stopping: the socket cannot be served."""

    def __init__(self, reason: str, code: CloseCode = CloseCode.TRY_AGAIN_LATER) -> None:
        super().__init__(reason)
        self.code = code


def _sockets_key(user_id: UUID) -> str:
    return f"{KEY_PREFIX}:sockets:{user_id}"


class Dispatcher:
    """This process's sockets, grouped by user, and the one pub/sub connection that feeds them."""

    def __init__(
        self,
        redis: Redis,
        settings: RealtimeSettings,
        on_account_change: Callable[[UUID], None] | None = None,
        on_hearing: Callable[[bool], None] | None = None,
    ) -> None:
        if settings.max_sockets_per_user < 1 or settings.outbound_queue_size < 1:
            raise ValueError("max_sockets_per_user and outbound_queue_size must be at least 1")
        self._redis = redis
        self._settings = settings
        self._register = redis.register_script(_REGISTER)
        self._by_channel: dict[bytes, set[Connection]] = {}
        self._by_id: dict[str, Connection] = {}
        # One future per SUBSCRIBE sent, resolved in order by Redis' confirmations.
        self._confirmations: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._stopping = False
        self._closed = False
        # Called with the user id of every account change (the process's status cache).
        self._on_account_change = on_account_change
        # Called with True once account changes reach this process, False when they stop.
        self._on_hearing = on_hearing
        # Accounts announced as no longer active: user id -> until when (monotonic).
        self._refused: dict[UUID, float] = {}

    @property
    def connection_count(self) -> int:
        return len(self._by_id)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_forever(), name="realtime-reader"),
            asyncio.create_task(self._sweep_forever(), name="realtime-sweep"),
        ]

    async def drain(self, code: CloseCode = CloseCode.GOING_AWAY) -> int:
        """Refuse new sockets and close every socket with ``code``, waiting (bounded) for the
        close frames to go out; returns how many were closed."""
        self._stopping = True
        connections = list(self._by_id.values())
        for connection in connections:
            connection.close(code, "server shutting down")
        if connections:
            await asyncio.wait(
                [asyncio.ensure_future(c.finished.wait()) for c in connections],
                timeout=self._settings.close_timeout_seconds + 1.0,
            )
        return len(connections)

    async def stop(self, code: CloseCode = CloseCode.GOING_AWAY) -> None:
        """:meth:`drain`, then stop reading from Redis."""
        closed = await self.drain(code)
        self._ready.clear()
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_pubsub()
        self._hearing(False)
        log.info("realtime_stopped", sockets_closed=closed)

    async def attach(self, connection: Connection) -> None:
        """Subscribe ``connection`` to its user's frames; returns once Redis has confirmed.

        Also registers it in the user's socket list, which may evict the user's oldest sockets on
        any process. Raises :class:`RealtimeUnavailable` when that cannot be done.
        """
        if self._stopping:
            raise RealtimeUnavailable("stopping", CloseCode.GOING_AWAY)
        try:
            async with asyncio.timeout(self._settings.auth_timeout_seconds):
                await self._ready.wait()
        except TimeoutError:
            raise RealtimeUnavailable("pub/sub not connected") from None
        if self._refused.get(connection.user_id, 0.0) > time.monotonic():
            # Disabled after this socket's status check: refused, as a new check would.
            raise RealtimeUnavailable("account disabled", CloseCode.ACCOUNT_DISABLED)
        channel = user_channel(connection.user_id).encode()
        # From here on an announced change finds this socket (no ``await`` since the check).
        self._by_id[connection.id] = connection
        members = self._by_channel.setdefault(channel, set())
        members.add(connection)
        try:
            async with asyncio.timeout(self._settings.auth_timeout_seconds):
                pending = self._confirmations.get(channel)
                if len(members) == 1:
                    await self._subscribe(channel)
                elif pending:
                    # Another socket of this user is mid-subscribe: its confirmation is ours too.
                    await asyncio.shield(pending[-1])
                await self._register(
                    keys=[_sockets_key(connection.user_id)],
                    args=[
                        time.time(),
                        connection.id,
                        self._settings.max_sockets_per_user,
                        SOCKET_LIST_TTL_SECONDS,
                        CONTROL_CHANNEL,
                    ],
                )
        except (RedisError, OSError, TimeoutError, ConnectionError) as exc:
            await self.detach(connection)
            raise RealtimeUnavailable(type(exc).__name__) from exc

    async def detach(self, connection: Connection) -> None:
        """Forget ``connection``; unsubscribe when it was the user's last socket here."""
        if self._by_id.pop(connection.id, None) is None:
            return
        channel = user_channel(connection.user_id).encode()
        members = self._by_channel.get(channel)
        if members is not None:
            members.discard(connection)
            if not members:
                del self._by_channel[channel]
                if self._pubsub is not None and self._ready.is_set():
                    with contextlib.suppress(RedisError, OSError, ConnectionError):
                        await self._pubsub.unsubscribe(channel)
        with contextlib.suppress(RedisError, OSError, ConnectionError):
            await self._redis.zrem(_sockets_key(connection.user_id), connection.id)

    async def _subscribe(self, channel: bytes) -> None:
        if self._pubsub is None:
            raise RealtimeUnavailable("pub/sub not connected")
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, deque()).append(confirmed)
        await self._pubsub.subscribe(channel)
        await asyncio.shield(confirmed)

    async def _connect(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(CONTROL_CHANNEL)
        self._pubsub = pubsub
        self._ready.set()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError, ConnectionError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _running(self) -> bool:
        # redis-py may swallow the cancellation of a read or a connect (or turn it into a
        # connection error), so the loops below also stop on this flag.
        return not self._closed

    async def _read_forever(self) -> None:
        while self._running():
            try:
                await self._connect()
                if not self._running():
                    return
                log.info("realtime_subscribed", sockets=len(self._by_id))
                await self._read()
                return
            except (RedisError, OSError, ConnectionError) as exc:
                if not self._running():
                    return
                log.warning("realtime_pubsub_lost", error=type(exc).__name__)
            self._hearing(False)
            self._ready.clear()
            self._fail_everything()
            await self._close_pubsub()
            await asyncio.sleep(RECONNECT_DELAY_SECONDS)

    async def _read(self) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        while self._running():
            message = await pubsub.get_message(timeout=SWEEP_SECONDS)
            if message is None:
                continue
            kind = message["type"]
            channel: bytes = message["channel"]
            if kind == "message":
                if channel == CONTROL_CHANNEL.encode():
                    self._control(message["data"])
                    continue
                for connection in tuple(self._by_channel.get(channel, ())):
                    connection.offer(message["data"])
            elif kind == "subscribe":
                if channel == CONTROL_CHANNEL.encode():
                    self._hearing(True)
                pending = self._confirmations.get(channel)
                if pending:
                    future = pending.popleft()
                    if not future.done():
                        future.set_result(None)
                    if not pending:
                        del self._confirmations[channel]

    def _hearing(self, heard: bool) -> None:
        if self._on_hearing is not None:
            self._on_hearing(heard)

    def _control(self, data: bytes) -> None:
        try:
            message = _control.decode(data)
        except msgspec.DecodeError:
            log.warning("realtime_control_message_unreadable")
            return
        if isinstance(message, AccountChange):
            self._account_changed(message)
        else:
            self._evict(message)

    def _account_changed(self, change: AccountChange) -> None:
        if self._on_account_change is not None:
            self._on_account_change(change.user_id)
        connections = tuple(self._by_channel.get(user_channel(change.user_id).encode(), ()))
        if change.active:
            self._refused.pop(change.user_id, None)
            frame = encode_control(
                AccountUpdatedFrame(data=AccountUpdatedData(tier=change.tier, role=change.role))
            )
            for connection in connections:
                connection.offer(frame)
            return
        self._refused[change.user_id] = time.monotonic() + REFUSE_SECONDS
        for connection in connections:
            connection.close(CloseCode.ACCOUNT_DISABLED, "account disabled")
        log.info("realtime_account_closed", user_id=str(change.user_id), sockets=len(connections))

    def _evict(self, ids: list[str]) -> None:
        for socket_id in ids:
            connection = self._by_id.get(socket_id)
            if connection is not None:
                connection.close(CloseCode.REPLACED, "too many sockets for this user")

    def _fail_everything(self) -> None:
        for pending in self._confirmations.values():
            for future in pending:
                if not future.done():
                    future.set_exception(RealtimeUnavailable("pub/sub connection lost"))
        self._confirmations.clear()
        for connection in list(self._by_id.values()):
            connection.close(CloseCode.TRY_AGAIN_LATER, "realtime backend unavailable")

    async def _sweep_forever(self) -> None:
        settings = self._settings
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now, wall = time.monotonic(), time.time()
            if self._refused:
                self._refused = {u: t for u, t in self._refused.items() if t > now}
            for connection in list(self._by_id.values()):
                if connection.close_overdue(now):
                    log.warning("realtime_close_overdue", user_id=str(connection.user_id))
                    connection.abort()
                elif now - connection.last_received > settings.heartbeat_timeout_seconds:
                    connection.close(CloseCode.HEARTBEAT_TIMEOUT, "no frame from the client")
                elif wall >= connection.expires_at:
                    connection.close(CloseCode.TOKEN_EXPIRED, "access token expired")
                elif now - connection.last_pinged > settings.heartbeat_interval_seconds and (
                    now - connection.last_received > settings.heartbeat_interval_seconds
                ):
                    connection.last_pinged = now
                    connection.offer(PING)
