"""One simulated user: signs in, holds a WebSocket, and follows the per-minute profile.

The profile (DESIGN section 10) per cycle of ``cycle_seconds`` (60 by default), with think time
spread between the steps: list sessions, open one session (its newest messages), send a message
and watch its reply stream in over the socket, post a feedback event, read tones and config.

In resilient mode (``Shared.resilience``, see ``resilience.py``) a user rides out an outage:
failed requests are tried again and a dropped socket is reconnected and resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from wingman.loadtest.codes import LogCodes
from wingman.loadtest.resilience import Resilience
from wingman.loadtest.stats import Recorder

# Request kinds whose latency counts against the REST budget.
REST_KINDS = (
    "list_sessions",
    "open_session",
    "post_message",
    "feedback",
    "tones",
    "config",
)
REPLY_TIMEOUT = 60.0
# Replies whose frames are kept while their post's answer is awaited.
EARLY_REPLIES = 16


@dataclass
class Pending:
    """A posted message whose reply is being watched on the socket."""

    posted_at: float
    first_delta: asyncio.Future[float]
    completed: asyncio.Future[str]


@dataclass
class Shared:
    """What every simulated user of a run shares."""

    base_url: str
    # One TLS context for every user's client (building one per client costs milliseconds).
    tls: ssl.SSLContext | None
    # Where sign-in reads its one-time codes; None when every user comes with a token.
    codes: LogCodes | None
    recorder: Recorder
    cycle_seconds: float
    stop: asyncio.Event
    # AI message id -> how many ``message.completed`` frames arrived (duplicates show as > 1).
    completions: dict[str, int] = field(default_factory=dict)
    posted: list[str] = field(default_factory=list)
    # Resilient mode: retry, reconnect and resume, counting the outage (None: the default mode).
    resilience: Resilience | None = None


class SimUser:
    def __init__(self, index: int, shared: Shared, run_tag: str, token: str = "") -> None:
        """``token``: an access token to use instead of signing in with a one-time code."""
        self.index = index
        self.shared = shared
        self.email = f"load-{run_tag}-{index}@example.org"
        self.token = token
        self.last_event_id: int | None = None
        # The server process holding the socket (its hello says): which node a user is on.
        self.server_pid = 0
        # ``message.completed`` frames this user's socket received.
        self.completed = 0
        # Replies found done over REST after a ``resync_required`` (their events were lost).
        self.caught_up: set[str] = set()
        self.headers: dict[str, str] = {}
        self.session_id = ""
        self.pending: dict[str, Pending] = {}
        # Reply frames that came before their post's answer (a reply can finish first), with
        # when they came: the post takes them as it starts watching.
        self.early: dict[str, list[tuple[str, float, dict[str, Any]]]] = {}
        self.socket: ClientConnection | None = None
        self.connected = False
        self.failed = False
        self.rng = random.Random(index)  # noqa: S311 - think-time jitter, not a secret
        # Each user has its own connection, as each app instance would. (One client shared by
        # every user made httpcore's pool scan all its connections for each request: at 600
        # users that, not the server, set the latencies.) It is held between requests, as
        # DESIGN's user holds it (section 9, client connections) and as browsers, mobile clients
        # and the front proxy's upstream pool do: httpx's default drops a connection idle for
        # 5 s, shorter than any think time, which made nearly every request a new connection.
        # The server may still close it; the next request then opens another.
        self.http = httpx.AsyncClient(
            timeout=30.0,
            limits=httpx.Limits(
                max_connections=2, max_keepalive_connections=1, keepalive_expiry=None
            ),
            verify=shared.tls if shared.tls is not None else True,
        )

    # --- requests ----------------------------------------------------------------------------

    async def _call(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        ok: int | tuple[int, ...] = 200,
    ) -> Any:
        resilience = self.shared.resilience
        deadline = resilience.deadline() if resilience is not None else 0.0
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = await self.http.request(
                    method, self.shared.base_url + path, json=json, headers=self.headers
                )
            except httpx.TransportError as exc:
                if resilience is not None and await resilience.after_connection_error(
                    attempt, deadline
                ):
                    attempt += 1
                    continue
                name = "timeout" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
                self.shared.recorder.error(f"{kind}:{name}")
                return None
            if resilience is None:
                break
            resilience.answered(response.status_code)
            if response.status_code != 503 or not await resilience.after_unavailable(
                response, attempt, deadline
            ):
                break
            attempt += 1
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code not in (ok if isinstance(ok, tuple) else (ok,)):
            self.shared.recorder.error(f"{kind}:http_{response.status_code}")
            return None
        self.shared.recorder.observe(kind, elapsed)
        return response.json() if response.content else {}

    async def sign_in(self) -> bool:
        if self.token:
            self.headers = {"Authorization": f"Bearer {self.token}"}
        elif not await self._sign_in_with_code():
            return False
        # Tones need a signed-in caller; users spread over them so every tone's phrases run.
        tones = await self._call("tones", "GET", "/api/v1/tones") or []
        tone = tones[self.index % len(tones)]["id"] if tones else None
        chat = await self._call(
            "create_session",
            "POST",
            "/api/v1/sessions",
            json={"title": f"load {self.index}", "tone_id": tone},
            ok=201,
        )
        if chat is None:
            return False
        self.session_id = chat["id"]
        return True

    async def _sign_in_with_code(self) -> bool:
        if self.shared.codes is None:
            raise RuntimeError("no one-time code source and no token for this user")
        started = time.perf_counter()
        self.headers = {}
        asked = await self._call(
            "otp_request",
            "POST",
            "/api/v1/auth/otp/request",
            json={"channel": "email", "destination": self.email},
            ok=202,
        )
        if asked is None:
            return False
        try:
            code = await self.shared.codes.code(asked["request_id"])
        except TimeoutError:
            self.shared.recorder.error("otp_code:timeout")
            return False
        tokens = await self._call(
            "otp_verify",
            "POST",
            "/api/v1/auth/otp/verify",
            json={"request_id": asked["request_id"], "code": code},
        )
        if tokens is None:
            return False
        self.token = tokens["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.shared.recorder.observe("sign_in", (time.perf_counter() - started) * 1000)
        return True

    # --- socket ------------------------------------------------------------------------------

    async def connect(self) -> bool:
        url = self.shared.base_url.replace("http", "ws", 1) + "/api/v1/ws"
        started = time.perf_counter()
        try:
            self.socket = await websockets.connect(
                url,
                subprotocols=[Subprotocol("bearer"), Subprotocol(self.token)],
                open_timeout=30,
                max_queue=None,
            )
            hello = msgspec.json.decode(await asyncio.wait_for(self.socket.recv(), 30))
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            self.shared.recorder.error(f"ws_connect:{type(exc).__name__}")
            return False
        if hello.get("type") != "hello":
            self.shared.recorder.error("ws_connect:no_hello")
            return False
        self.server_pid = hello.get("data", {}).get("pid", 0)
        if self.shared.resilience is not None and self.last_event_id is None:
            # Start from now: a drop before the first event resumes from here.
            self.last_event_id = hello.get("data", {}).get("event_id")
        resume = {"type": "resume", "last_event_id": self.last_event_id}
        await self.socket.send(msgspec.json.encode(resume))
        self.shared.recorder.observe("ws_connect", (time.perf_counter() - started) * 1000)
        self.connected = True
        return True

    async def read_socket(self, socket: ClientConnection) -> None:
        """Read frames until the socket closes; in resilient mode reconnect, resume, read on."""
        while True:
            await self._read_frames(socket)
            if not await self._reconnect():
                return
            if self.socket is None:  # pragma: no cover - connect() set it
                return
            socket = self.socket

    async def _read_frames(self, socket: ClientConnection) -> None:
        try:
            async for raw in socket:
                frame = msgspec.json.decode(raw)
                kind = frame.get("type")
                if isinstance(frame.get("event_id"), int):
                    self.last_event_id = frame["event_id"]
                if kind == "ping":
                    await socket.send(b'{"type":"pong"}')
                elif kind == "resync_required" and self.shared.resilience is not None:
                    self.shared.resilience.resyncs += 1
                    await self._catch_up()
                elif kind in ("message.delta", "message.completed", "message.failed"):
                    self._on_reply_frame(kind, frame["data"])
        except websockets.ConnectionClosed as exc:
            if not self.shared.stop.is_set():
                code = exc.rcvd.code if exc.rcvd is not None else "none"
                self.shared.recorder.error(f"ws_closed:{code}")
        finally:
            self.connected = False

    async def _reconnect(self) -> bool:
        """Resilient mode: connect again through the same base URL (waiting between tries) and
        resume from the last event seen; whether the socket is back."""
        resilience = self.shared.resilience
        if resilience is None or self.shared.stop.is_set():
            return False
        dropped_at = time.monotonic()
        deadline = resilience.deadline()
        attempt = 0
        while True:
            if await self.connect():
                resilience.reconnected(time.monotonic() - dropped_at)
                if self.last_event_id is not None:
                    resilience.resumes += 1
                return True
            if not await resilience.after_connection_error(attempt, deadline):
                return False
            attempt += 1

    async def _catch_up(self) -> None:
        """After ``resync_required`` (events the server no longer has): refetch the session's
        newest messages over REST, as a client does, and take the replies found done as
        arrived."""
        page = await self._call(
            "resync_messages", "GET", f"/api/v1/sessions/{self.session_id}/messages"
        )
        for item in (page or {}).get("items", []):
            ai_id = str(item["id"])
            if item["processing_status"] == "done" and ai_id in self.pending:
                self._on_reply_frame("message.completed", {"id": ai_id})
                self.caught_up.add(ai_id)

    def _on_reply_frame(self, kind: str, data: dict[str, Any]) -> None:
        message_id = str(data.get("message_id") or data.get("id"))
        if kind == "message.completed" and message_id in self.caught_up:
            return  # already taken as arrived when the stream was resynced
        if kind == "message.completed":
            self.completed += 1
            self.shared.completions[message_id] = self.shared.completions.get(message_id, 0) + 1
        now = time.perf_counter()
        pending = self.pending.get(message_id)
        if pending is None:
            self.early.setdefault(message_id, []).append((kind, now, data))
            while len(self.early) > EARLY_REPLIES:
                # Frames of replies this user never watches (another device's, say).
                del self.early[next(iter(self.early))]
            return
        self._take(pending, kind, now, data)

    @staticmethod
    def _take(pending: Pending, kind: str, now: float, data: dict[str, Any]) -> None:
        if kind == "message.delta" and not pending.first_delta.done():
            pending.first_delta.set_result(now)
        elif kind == "message.completed" and not pending.completed.done():
            if not pending.first_delta.done():
                pending.first_delta.set_result(now)
            pending.completed.set_result("done")
        elif kind == "message.failed" and not pending.completed.done():
            pending.completed.set_result(data.get("processing_status", "failed"))

    # --- the profile -------------------------------------------------------------------------

    async def think(self) -> None:
        pause = self.shared.cycle_seconds / 5 * self.rng.uniform(0.5, 1.5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.shared.stop.wait(), pause)

    async def cycle(self) -> None:
        sid = self.session_id
        await self._call("list_sessions", "GET", "/api/v1/sessions")
        await self.think()
        await self._call("open_session", "GET", f"/api/v1/sessions/{sid}")
        await self.think()
        await self.send_message()
        await self.think()
        await self._call(
            "feedback",
            "POST",
            f"/api/v1/sessions/{sid}/events",
            json={"type": "liked"},
            ok=201,
        )
        await self.think()
        await self._call("tones", "GET", "/api/v1/tones")
        await self._call("config", "GET", "/api/v1/config")

    async def send_message(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        body = {"content": f"Message {self.rng.randrange(10**6)} about the weekend plans"}
        ok: int | tuple[int, ...] = 202
        if self.shared.resilience is not None:
            # A retried post is the same post: a replay answers 200 with the first pair.
            body["idempotency_key"] = uuid.uuid4().hex
            ok = (200, 202)
        pair = await self._call(
            "post_message",
            "POST",
            f"/api/v1/sessions/{self.session_id}/messages",
            json=body,
            ok=ok,
        )
        if pair is None:
            return
        ai_id = pair["ai_message"]["id"]
        self.shared.posted.append(ai_id)
        pending = Pending(started, loop.create_future(), loop.create_future())
        self.pending[ai_id] = pending
        for kind, at, data in self.early.pop(ai_id, []):
            self._take(pending, kind, at, data)
        try:
            first = await asyncio.wait_for(asyncio.shield(pending.first_delta), REPLY_TIMEOUT)
            self.shared.recorder.observe("reply_first_delta", (first - started) * 1000)
            outcome = await asyncio.wait_for(asyncio.shield(pending.completed), REPLY_TIMEOUT)
            if outcome == "done":
                self.shared.recorder.observe(
                    "reply_completed", (time.perf_counter() - started) * 1000
                )
            else:
                self.shared.recorder.error(f"reply:{outcome}")
        except TimeoutError:
            self.shared.recorder.error("reply:timeout")
        finally:
            self.pending.pop(ai_id, None)

    async def run(self) -> None:
        """Sign in, connect, then cycle until the run stops."""
        try:
            await self._run()
        finally:
            await self.http.aclose()

    async def _run(self) -> None:
        if not await self.sign_in() or not await self.connect():
            self.failed = True
            return
        if self.socket is None:  # pragma: no cover - connect() set it
            return
        reader = asyncio.create_task(self.read_socket(self.socket))
        try:
            # Spread the first cycles so the users do not act in lockstep.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.shared.stop.wait(), self.rng.uniform(0, self.shared.cycle_seconds / 5)
                )
            while not self.shared.stop.is_set():
                await self.cycle()
                if not self.connected and self.shared.resilience is None:
                    self.failed = True
                    break
                await self.think()
        finally:
            if self.socket is not None:
                await self.socket.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
