"""One client's WebSocket from handshake to close: authentication, resume, the outbound queue.

The life of a socket:

1. *Authenticate*: the access token from the ``bearer`` subprotocol entry, or from an ``auth``
   frame within ``auth_timeout_seconds`` (never from the URL). Checked exactly as REST checks it,
   plus the account's status.
2. *Subscribe*: :meth:`Dispatcher.attach` returns once Redis confirmed the subscription; from then
   on the user's live frames collect in this socket's bounded queue, not yet sent.
3. *Hello*, with the newest ``event_id`` and this worker's pid.
4. *Start*: the client's first frame decides where the stream starts. ``resume {last_event_id}``
   sends the retained frames after that id (or ``resync_required``); anything else, or
   ``resume_wait_seconds`` of silence, starts from the ``hello`` id. The sender task then drains the
   queue, skipping every frame at or below the last id sent, so an event published between
   subscription and replay reaches the client once, in order.
5. *Serve* client frames (``ping``, ``pong``, ``auth`` with a fresh token, ``resume``) until the
   client leaves or the server closes it: queue overflow, heartbeat, token expiry, eviction,
   shutdown. A close cancels the sender and wakes the handler (an event, not only a
   cancellation, which a library on the way may swallow), which cancels the pending receive and
   then writes the close frame, each bounded by ``close_timeout_seconds`` (a peer that does not
   read cannot hold it open). A close that still has not finished after twice that is forced by
   the dispatcher's sweep.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from asyncio import FIRST_COMPLETED
from datetime import UTC, datetime
from typing import Any

import structlog
from litestar import WebSocket
from litestar.exceptions import NotAuthorizedException, WebSocketDisconnect
from sqlalchemy.exc import SQLAlchemyError

from wingman.config import Settings
from wingman.domain.realtime.dispatcher import Dispatcher, RealtimeUnavailable
from wingman.domain.realtime.events import EventBus
from wingman.domain.realtime.protocol import (
    BEARER_SUBPROTOCOL,
    PONG,
    AuthenticatedData,
    AuthenticatedFrame,
    AuthFrame,
    BadFrame,
    ClientFrame,
    CloseCode,
    FrameTooBig,
    HelloData,
    HelloFrame,
    PingFrame,
    PongFrame,
    ResumeFrame,
    decode_client_frame,
    encode_control,
    frame_event_id,
    is_event_frame,
    resumed,
    resync_required,
)
from wingman.server.auth import (
    AccessTokenExpired,
    AuthUser,
    account_is_active,
    decode_access_token,
)
from wingman.server.metrics import WEBSOCKET_CONNECTIONS, WEBSOCKET_FRAMES

log = structlog.get_logger(__name__)

_FRAMES_IN = WEBSOCKET_FRAMES.labels(direction="in")
_FRAMES_OUT = WEBSOCKET_FRAMES.labels(direction="out")
_HOSTILE_FRAME = (CloseCode.BAD_FRAME, CloseCode.MESSAGE_TOO_BIG)


class _Closed(Exception):
    """The server decided to close the socket with this code."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def offered_token(socket: WebSocket[Any, Any, Any]) -> str | None:
    """The token following a ``bearer`` entry in ``Sec-WebSocket-Protocol``, if offered."""
    offered: list[str] = list(socket.scope.get("subprotocols") or [])
    if BEARER_SUBPROTOCOL in offered:
        index = offered.index(BEARER_SUBPROTOCOL)
        if index + 1 < len(offered):
            return offered[index + 1]
        return ""
    return None


class Connection:
    """A socket the dispatcher delivers to; also what the sweep checks for heartbeat and expiry."""

    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        dispatcher: Dispatcher,
        bus: EventBus,
        settings: Settings,
    ) -> None:
        self.socket = socket
        self.id = uuid.uuid4().hex
        self.user_id = uuid.UUID(int=0)
        self.expires_at = 0.0
        self.last_received = time.monotonic()
        self.last_pinged = self.last_received
        self.finished = asyncio.Event()
        self._dispatcher = dispatcher
        self._bus = bus
        self._settings = settings
        self._realtime = settings.realtime
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(settings.realtime.outbound_queue_size)
        self._cursor = 0
        self._closing: _Closed | None = None
        self._handler: asyncio.Task[Any] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._receiving: asyncio.Future[Any] | None = None
        self._close_requested = 0.0
        self._close_wanted = asyncio.Event()

    # -- called by the dispatcher and the sweep ------------------------------------------------

    def offer(self, frame: bytes) -> None:
        """Queue a frame for sending; a full queue closes the socket (the client is too slow)."""
        if self._closing is not None:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(CloseCode.TOO_SLOW, "client is not reading fast enough")

    def close(self, code: CloseCode, reason: str) -> None:
        """Ask for the socket to close with ``code``; the handler writes the close frame."""
        if self._closing is not None or self.finished.is_set():
            return
        self._closing = _Closed(code, reason)
        self._close_requested = time.monotonic()
        self._close_wanted.set()
        if self._sender is not None:
            self._sender.cancel()
        if self._handler is not None:
            self._handler.cancel()

    def close_overdue(self, now: float) -> bool:
        """True when a close was asked for and the handler has not finished in time."""
        return (
            self._closing is not None
            and not self.finished.is_set()
            and now - self._close_requested > 2 * self._realtime.close_timeout_seconds + 2.0
        )

    def _close_asked(self) -> _Closed | None:
        # A method, not the attribute: a close may be asked for during any ``await``.
        return self._closing

    def abort(self) -> None:
        """The last resort for a close that did not finish: stop the handler and the server's
        receive alike (the close frame may then be lost; the connection is dropped)."""
        for task in (self._sender, self._receiving, self._handler):
            if task is not None:
                task.cancel()

    # -- the handler ---------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run the socket to its end; never raises for anything the client does."""
        self._handler = asyncio.current_task()
        code, reason = CloseCode.NORMAL, ""
        counted = False
        try:
            try:
                resume_from = await self._authenticate()
                await self._dispatcher.attach(self)
                WEBSOCKET_CONNECTIONS.inc()
                counted = True
                await self._start(resume_from)
                await self._receive_forever()
            except asyncio.CancelledError:
                if self._closing is None or self._handler is None:
                    raise
                self._handler.uncancel()
            except _Closed as closed:
                self._closing = self._closing or closed
            except RealtimeUnavailable as exc:
                reason = (
                    "account disabled"
                    if exc.code is CloseCode.ACCOUNT_DISABLED
                    else "realtime unavailable, reconnect later"
                )
                self._closing = _Closed(exc.code, reason)
            except WebSocketDisconnect:
                pass
            if self._closing is not None:
                code, reason = self._closing.code, self._closing.reason
                await self._send_close(code, reason)
        finally:
            if self._sender is not None:
                self._sender.cancel()
            # A no-op unless attached (a close may interrupt attach itself).
            await self._dispatcher.detach(self)
            if counted:
                WEBSOCKET_CONNECTIONS.dec()
            self.finished.set()
            if self.expires_at or (self._closing is not None and code in _HOSTILE_FRAME):
                # One line per socket, also for a hostile frame sent before authenticating.
                log.info(
                    "realtime_socket_closed",
                    user_id=str(self.user_id) if self.expires_at else None,
                    code=int(code) if self._closing else None,
                    reason=reason or None,
                )

    async def _stop_receiving(self) -> None:
        """Cancel the pending receive and wait (bounded) until the server has let go of it."""
        receiving, self._receiving = self._receiving, None
        if receiving is None:
            return
        receiving.cancel()
        # ``wait``, not ``await``: the handler's own cancellation (an abort) still gets through.
        await asyncio.wait((receiving,), timeout=self._realtime.close_timeout_seconds)
        if receiving.done() and not receiving.cancelled():
            receiving.exception()  # retrieved: a receive that failed as the socket went away

    async def _send_close(self, code: CloseCode, reason: str) -> None:
        if self.socket.connection_state == "init":
            await self.socket.accept()
        await self._stop_receiving()
        try:
            async with asyncio.timeout(self._realtime.close_timeout_seconds):
                await self.socket.close(code, reason)
        except (TimeoutError, WebSocketDisconnect, OSError, RuntimeError):
            pass

    async def _authenticate(self) -> int | None:
        """Accept with the subprotocol token or wait for an ``auth`` frame; returns the
        ``last_event_id`` an ``auth`` frame carried (None when it carried none)."""
        token = offered_token(self.socket)
        if token is not None:
            await self.socket.accept(subprotocols=BEARER_SUBPROTOCOL)
            await self._check_token(token)
            return None
        await self.socket.accept()
        try:
            async with asyncio.timeout(self._realtime.auth_timeout_seconds):
                frame = await self._receive_frame()
        except TimeoutError:
            raise _Closed(CloseCode.AUTH_TIMEOUT, "no auth frame") from None
        if not isinstance(frame, AuthFrame):
            raise _Closed(CloseCode.UNAUTHORIZED, "the first frame must be auth")
        await self._check_token(frame.token)
        return frame.last_event_id

    async def _check_token(self, token: str) -> None:
        try:
            user, expires = decode_access_token(self._settings, token)
        except AccessTokenExpired:
            raise _Closed(CloseCode.TOKEN_EXPIRED, "access token expired") from None
        except NotAuthorizedException:
            raise _Closed(CloseCode.UNAUTHORIZED, "invalid access token") from None
        if self.expires_at and user.id != self.user_id:
            raise _Closed(CloseCode.UNAUTHORIZED, "token is for another user")
        await self._check_active(user)
        self.user_id = user.id
        self.expires_at = expires.timestamp()

    async def _check_active(self, user: AuthUser) -> None:
        try:
            active = await account_is_active(self.socket, user.id)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("realtime_status_check_failed", error=type(exc).__name__)
            raise _Closed(CloseCode.SERVER_ERROR, "try again later") from None
        if not active:
            raise _Closed(CloseCode.ACCOUNT_DISABLED, "account disabled")

    async def _start(self, resume_from: int | None) -> None:
        """Send ``hello``, settle where the stream starts, then start the sender."""
        newest = await self._bus.last_event_id(self.user_id)
        await self._send(
            encode_control(
                HelloFrame(
                    data=HelloData(
                        event_id=newest,
                        connection_id=self.id,
                        pid=os.getpid(),
                        heartbeat_seconds=self._realtime.heartbeat_interval_seconds,
                        expires_at=self._expires_iso(),
                    )
                )
            )
        )
        self._cursor = newest
        first: ClientFrame | None = None
        if resume_from is None:
            try:
                async with asyncio.timeout(self._realtime.resume_wait_seconds):
                    first = await self._receive_frame()
            except TimeoutError:
                pass
            if isinstance(first, ResumeFrame):
                resume_from, first = first.last_event_id, None
                if resume_from is None:
                    await self._send(resumed(newest, replayed=0))
        if resume_from is not None:
            await self._replay(resume_from)
        self._sender = asyncio.create_task(self._send_forever())
        if first is not None:
            await self._handle(first)

    async def _replay(self, last_event_id: int) -> None:
        replay = await self._bus.replay(self.user_id, last_event_id)
        if replay.resync_required:
            # Live frames after the newest id follow; the client refetches the rest over REST.
            self._cursor = await self._bus.last_event_id(self.user_id)
            await self._send(resync_required(self._cursor))
            return
        self._cursor = last_event_id
        for frame in replay.frames:
            await self._send(frame)
            self._cursor = frame_event_id(frame)
        await self._send(resumed(self._cursor, replayed=len(replay.frames)))

    async def _receive_forever(self) -> None:
        while True:
            await self._handle(await self._receive_frame())

    async def _handle(self, frame: ClientFrame) -> None:
        if isinstance(frame, PingFrame):
            self.offer(PONG)
        elif isinstance(frame, PongFrame):
            pass
        elif isinstance(frame, AuthFrame):
            await self._check_token(frame.token)
            self.offer(
                encode_control(
                    AuthenticatedFrame(data=AuthenticatedData(expires_at=self._expires_iso()))
                )
            )
        elif isinstance(frame, ResumeFrame):
            # The stream has started: everything after the cursor is on its way already.
            # Only a client that lost frames it had been sent could ask for older ones, and
            # only one holding ids from before a lost sequence could name one never issued.
            wanted = frame.last_event_id
            if wanted is not None and (
                wanted < self._cursor
                or (wanted > self._cursor and wanted > await self._bus.last_event_id(self.user_id))
            ):
                self.offer(resync_required(self._cursor))
            else:
                self.offer(resumed(self._cursor, replayed=0))

    def _expires_iso(self) -> str:
        return datetime.fromtimestamp(self.expires_at, UTC).isoformat()

    async def _receive_message(self) -> Any:
        """The next ASGI message, or :class:`_Closed` as soon as a close is asked for.

        The server's ``receive`` runs in a task of its own that neither a timeout nor a close
        cancels: a close wakes this wait through ``_close_wanted`` (a cancellation swallowed on
        its way, by a client library or the server, cannot leave the socket half-closed), and
        the next call picks up the same pending receive. Granian must not have a receive pending
        when the close frame goes out (the frame would be lost and the client left with an open,
        dead socket), so :meth:`_stop_receiving` cancels it first.
        """
        if self._closing is not None:
            raise self._closing
        if self._receiving is None:
            self._receiving = asyncio.ensure_future(self.socket.receive())
        close_wanted = asyncio.ensure_future(self._close_wanted.wait())
        try:
            await asyncio.wait((self._receiving, close_wanted), return_when=FIRST_COMPLETED)
        finally:
            close_wanted.cancel()
        closing = self._close_asked()
        if closing is not None and not self._receiving.done():
            raise closing
        receiving, self._receiving = self._receiving, None
        return receiving.result()

    async def _receive_frame(self) -> ClientFrame:
        message = await self._receive_message()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(detail="client left", code=message.get("code", 1000))
        self.last_received = time.monotonic()
        _FRAMES_IN.inc()
        raw = message.get("text") or message.get("bytes") or b""
        try:
            return decode_client_frame(raw)
        except FrameTooBig:
            raise _Closed(CloseCode.MESSAGE_TOO_BIG, "frame too big") from None
        except BadFrame:
            raise _Closed(CloseCode.BAD_FRAME, "unknown or malformed frame") from None

    async def _send(self, frame: bytes) -> None:
        await self.socket.send({"type": "websocket.send", "text": frame.decode(), "bytes": None})
        _FRAMES_OUT.inc()

    async def _send_forever(self) -> None:
        """Send queued frames in order, each event once.

        Live events of one user reach the queue in publishing order, each one more than the one
        before. A jump means the numbering started again (the queue Redis lost the sequence; see
        :mod:`.events`): events the client holds may be gone from the history, so it is told
        ``resync_required`` before the first event of the new numbering, instead of seeing its
        ids jump or, worse, having new events skipped as already delivered.
        """
        live_last = 0
        try:
            while True:
                frame = await self._queue.get()
                if is_event_frame(frame):
                    event_id = frame_event_id(frame)
                    if live_last:
                        renumbered = event_id != live_last + 1
                    else:
                        # The first live event follows the start point, or is older (it was
                        # also replayed); a user with no event yet starts anywhere.
                        renumbered = self._cursor > 0 and event_id > self._cursor + 1
                    live_last = event_id
                    if renumbered:
                        log.info("realtime_numbering_restarted", user_id=str(self.user_id))
                        self._cursor = event_id - 1
                        await self._send(resync_required(self._cursor))
                    elif event_id <= self._cursor:
                        continue
                    self._cursor = event_id
                await self._send(frame)
        except (WebSocketDisconnect, OSError, RuntimeError):
            # The peer is gone; the receive loop sees the disconnect and ends the handler.
            return
