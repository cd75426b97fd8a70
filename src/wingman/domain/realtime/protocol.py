"""The WebSocket's wire format: client frames, server control frames and close codes.

Event frames (``message.delta`` and the rest) are typed in :mod:`.event_frames` and numbered by
:mod:`.events`: they carry an ``event_id``; the control frames here never do, so a client can
tell them apart by that key. Every frame is a msgspec Struct, and the AsyncAPI document
(:mod:`.asyncapi`, served at ``/api/docs/asyncapi.json``) is generated from these same types, so
the description cannot drift from what is sent. ``docs/realtime.md`` explains the protocol in
prose; keep it in step.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated

import msgspec

from wingman.db.models import UserRole, UserTier
from wingman.server.request_body import nested_deeper_than

# The subprotocol a client offers (followed by its access token) and the server selects.
BEARER_SUBPROTOCOL = "bearer"
# The largest client frame read (in bytes); client frames are a few hundred bytes (an ``auth``
# frame with its token is the largest). A bigger one closes the socket with 1009 before it is
# decoded.
MAX_CLIENT_FRAME_BYTES = 16 * 1024
# Client frames are flat objects; a frame nesting arrays or objects deeper than this is refused.
# Checked on its own because whether the decoder stops at some depth depends on the interpreter:
# Python 3.11 raises RecursionError a few thousand levels down, 3.12+ decodes far deeper.
MAX_CLIENT_FRAME_DEPTH = 32


class CloseCode(IntEnum):
    """Why the server closed a socket; 4000-4999 are Wingman's own codes. Each has its meaning
    and the client's next step in :data:`CLOSE_CODES`."""

    NORMAL = 1000
    GOING_AWAY = 1001
    SERVER_ERROR = 1011
    MESSAGE_TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013
    BAD_FRAME = 4000
    UNAUTHORIZED = 4001
    AUTH_TIMEOUT = 4002
    ACCOUNT_DISABLED = 4003
    TOKEN_EXPIRED = 4004
    TOO_SLOW = 4008
    REPLACED = 4009
    HEARTBEAT_TIMEOUT = 4010


class CloseCodeMeaning(msgspec.Struct, frozen=True, kw_only=True):
    """What a close code says, and what a client does on receiving it."""

    meaning: str
    client_action: str


# Documented in the AsyncAPI document (``x-close-codes``) and in docs/realtime.md.
CLOSE_CODES: dict[CloseCode, CloseCodeMeaning] = {
    CloseCode.NORMAL: CloseCodeMeaning(meaning="normal closure", client_action="nothing"),
    CloseCode.GOING_AWAY: CloseCodeMeaning(
        meaning="the server is shutting down (restart, deploy)",
        client_action="reconnect at once (to another worker), then resume",
    ),
    CloseCode.SERVER_ERROR: CloseCodeMeaning(
        meaning="an unexpected server error",
        client_action="reconnect with backoff, then resume",
    ),
    CloseCode.MESSAGE_TOO_BIG: CloseCodeMeaning(
        meaning="a client frame over MAX_CLIENT_FRAME_BYTES (16 KiB)",
        client_action="fix the client",
    ),
    CloseCode.TRY_AGAIN_LATER: CloseCodeMeaning(
        meaning="the realtime backend (Redis) is unavailable or was interrupted",
        client_action="reconnect with backoff, then resume",
    ),
    CloseCode.BAD_FRAME: CloseCodeMeaning(
        meaning="a client frame that is not valid JSON, not a known type, or nested too deeply",
        client_action="fix the client",
    ),
    CloseCode.UNAUTHORIZED: CloseCodeMeaning(
        meaning=(
            "no token, or a token that is malformed, badly signed or for another user; or a "
            "first frame that is not auth"
        ),
        client_action="sign in again",
    ),
    CloseCode.AUTH_TIMEOUT: CloseCodeMeaning(
        meaning="no auth frame within realtime.auth_timeout_seconds (5) of connecting",
        client_action="reconnect and authenticate",
    ),
    CloseCode.ACCOUNT_DISABLED: CloseCodeMeaning(
        meaning="the account is disabled or deleted (at once, on every server)",
        client_action="stop; do not reconnect",
    ),
    CloseCode.TOKEN_EXPIRED: CloseCodeMeaning(
        meaning="the access token expired and no fresh one arrived in an auth frame",
        client_action="refresh the token, reconnect, resume",
    ),
    CloseCode.TOO_SLOW: CloseCodeMeaning(
        meaning=(
            "the client read too slowly: its outbound queue (realtime.outbound_queue_size) "
            "overflowed"
        ),
        client_action="reconnect, resume",
    ),
    CloseCode.REPLACED: CloseCodeMeaning(
        meaning=(
            "the user opened more than realtime.max_sockets_per_user sockets; this was the oldest"
        ),
        client_action="do not reconnect automatically (it would close another of your sockets)",
    ),
    CloseCode.HEARTBEAT_TIMEOUT: CloseCodeMeaning(
        meaning="nothing received for realtime.heartbeat_timeout_seconds (60)",
        client_action="reconnect, resume",
    ),
}


class AuthFrame(msgspec.Struct, tag="auth", tag_field="type", kw_only=True):
    """First frame of a connection without a subprotocol token, or a fresh token later."""

    token: Annotated[str, msgspec.Meta(description="An access token (JWT).")]
    last_event_id: Annotated[
        int | None,
        msgspec.Meta(description="Where to resume from, saving a separate resume frame."),
    ] = None


class PingFrame(msgspec.Struct, tag="ping", tag_field="type", kw_only=True):
    pass


class PongFrame(msgspec.Struct, tag="pong", tag_field="type", kw_only=True):
    """The answer to the server's ``ping``."""


class ResumeFrame(msgspec.Struct, tag="resume", tag_field="type", kw_only=True):
    """Where the stream starts: after the last event the client processed."""

    last_event_id: Annotated[
        int | None,
        msgspec.Meta(
            description="The last event id processed; null: start from now (hello's event_id)."
        ),
    ] = None


ClientFrame = AuthFrame | PingFrame | PongFrame | ResumeFrame
CLIENT_FRAMES: tuple[type[msgspec.Struct], ...] = (AuthFrame, PingFrame, PongFrame, ResumeFrame)

_client_decoder = msgspec.json.Decoder(ClientFrame)
_encoder = msgspec.json.Encoder()


class FrameTooBig(ValueError):
    """A client frame over :data:`MAX_CLIENT_FRAME_BYTES`."""


class BadFrame(ValueError):
    """A client frame that is not one of :data:`ClientFrame`."""


def frame_size(raw: str | bytes) -> int:
    """The frame's size in bytes (UTF-8 for text), without encoding an ASCII text frame."""
    if isinstance(raw, str) and not raw.isascii():
        return len(raw.encode())
    return len(raw)


def decode_client_frame(raw: str | bytes) -> ClientFrame:
    """The frame, or :class:`FrameTooBig` (checked before decoding) or :class:`BadFrame`
    (malformed JSON, an unknown type or field value, or nesting deeper than the decoder goes)."""
    if frame_size(raw) > MAX_CLIENT_FRAME_BYTES:
        raise FrameTooBig(f"frame over {MAX_CLIENT_FRAME_BYTES} bytes")
    try:
        if _brackets(raw) > MAX_CLIENT_FRAME_DEPTH and nested_deeper_than(
            msgspec.json.decode(raw), MAX_CLIENT_FRAME_DEPTH
        ):
            raise BadFrame("nested too deeply")
        frame: ClientFrame = _client_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        # ``DecodeError`` covers ``ValidationError``; ``RecursionError``: arrays or objects
        # nested deeper than the decoder's recursion limit, which no real frame has.
        raise BadFrame(type(exc).__name__) from None
    return frame


def _brackets(raw: str | bytes) -> int:
    """Opening brackets in the frame: a cheap bound on its depth, so that ordinary frames (one
    object) skip the depth walk."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


# -- server control frames: ``{"type": ..., "data": {...}}``, never an ``event_id`` -------------

# An RFC 3339 time with its UTC offset (``2026-11-23T12:45:09+00:00``), as Python writes it.
TokenExpiry = Annotated[
    str,
    msgspec.Meta(
        description="When the access token expires; send a fresh one in an auth frame before.",
        extra_json_schema={"format": "date-time"},
    ),
]


class ControlFrame(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of the server's control frames; the tag is the ``type``."""


class Empty(msgspec.Struct, forbid_unknown_fields=True):
    """No data: ``{}``."""


class HelloData(msgspec.Struct, kw_only=True):
    event_id: Annotated[
        int,
        msgspec.Meta(
            description="The newest event id issued to the user so far (0 if none): where a "
            "fresh stream starts."
        ),
    ]
    connection_id: str
    pid: Annotated[
        int, msgspec.Meta(description="The server process holding the socket (logs, tests).")
    ]
    heartbeat_seconds: Annotated[
        float, msgspec.Meta(description="How often the server pings a quiet socket.")
    ]
    expires_at: TokenExpiry


class HelloFrame(ControlFrame, tag="hello"):
    """The first server frame once authenticated."""

    data: HelloData


class ResumedData(msgspec.Struct, kw_only=True):
    event_id: Annotated[
        int, msgspec.Meta(description="The newest event id sent: live events follow it.")
    ]
    replayed: Annotated[
        int, msgspec.Meta(description="How many missed events were sent before this frame.")
    ]


class ResumedFrame(ControlFrame, tag="resumed"):
    """The answer to ``resume`` once every missed event has been sent."""

    data: ResumedData


class ResyncData(msgspec.Struct, kw_only=True):
    event_id: Annotated[
        int,
        msgspec.Meta(
            description="Live events after this id follow; refetch what came before over REST."
        ),
    ]


class ResyncRequiredFrame(ControlFrame, tag="resync_required"):
    """The missed events are not all kept (or the numbering was lost): refetch over REST."""

    data: ResyncData


class AuthenticatedData(msgspec.Struct, kw_only=True):
    expires_at: TokenExpiry


class AuthenticatedFrame(ControlFrame, tag="authenticated"):
    """The answer to a later ``auth`` frame: the fresh token is in force."""

    data: AuthenticatedData


class AccountUpdatedData(msgspec.Struct, kw_only=True):
    tier: UserTier
    role: UserRole


class AccountUpdatedFrame(ControlFrame, tag="account_updated"):
    """An admin changed the account's tier or role: refresh the token and send it in ``auth``."""

    data: AccountUpdatedData


class ServerPingFrame(ControlFrame, tag="ping"):
    """The server's heartbeat on a quiet socket; answer with a ``pong`` frame."""

    data: Empty = msgspec.field(default_factory=Empty)


class ServerPongFrame(ControlFrame, tag="pong"):
    """The answer to the client's ``ping``."""

    data: Empty = msgspec.field(default_factory=Empty)


ServerControlFrame = (
    HelloFrame
    | ResumedFrame
    | ResyncRequiredFrame
    | AuthenticatedFrame
    | AccountUpdatedFrame
    | ServerPingFrame
    | ServerPongFrame
)
SERVER_CONTROL_FRAMES: tuple[type[ControlFrame], ...] = (
    HelloFrame,
    ResumedFrame,
    ResyncRequiredFrame,
    AuthenticatedFrame,
    AccountUpdatedFrame,
    ServerPingFrame,
    ServerPongFrame,
)


def encode_control(frame: ServerControlFrame) -> bytes:
    """A server control frame on the wire."""
    return _encoder.encode(frame)


def resumed(event_id: int, replayed: int) -> bytes:
    return encode_control(ResumedFrame(data=ResumedData(event_id=event_id, replayed=replayed)))


def resync_required(event_id: int) -> bytes:
    return encode_control(ResyncRequiredFrame(data=ResyncData(event_id=event_id)))


PING = encode_control(ServerPingFrame())
PONG = encode_control(ServerPongFrame())


def frame_event_id(frame: bytes) -> int:
    """The ``event_id`` of an event frame, read from its fixed prefix without decoding it all.

    Frames are built by the publish script as ``{"event_id":<n>,...``.
    """
    end = frame.index(b",", 12)
    return int(frame[12:end])


def is_event_frame(raw: bytes) -> bool:
    return raw.startswith(b'{"event_id":')
