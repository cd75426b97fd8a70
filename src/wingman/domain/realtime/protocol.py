"""The WebSocket's wire format: client frames, server control frames and close codes.

Event frames (``message.delta`` and the rest) come ready-made from :mod:`.events` and carry an
``event_id``; the control frames here never do, so a client can tell them apart by that key.
``docs/realtime.md`` describes the protocol for client developers; keep the two in step.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import msgspec

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
    """Why the server closed a socket; 4000-4999 are Wingman's own codes."""

    NORMAL = 1000
    # The worker is shutting down: reconnect (to another worker) and resume.
    GOING_AWAY = 1001
    # An unexpected server error: reconnect with backoff and resume.
    SERVER_ERROR = 1011
    # A client frame larger than ``MAX_CLIENT_FRAME_BYTES``.
    MESSAGE_TOO_BIG = 1009
    # The realtime backend (Redis) is unavailable: reconnect with backoff and resume.
    TRY_AGAIN_LATER = 1013
    # A client frame that is not valid JSON, not a known type, or nested too deeply.
    BAD_FRAME = 4000
    # No token, or a token that is malformed, badly signed or for another user: sign in again.
    UNAUTHORIZED = 4001
    # No ``auth`` frame within ``realtime.auth_timeout_seconds`` of connecting.
    AUTH_TIMEOUT = 4002
    # The account is disabled or deleted.
    ACCOUNT_DISABLED = 4003
    # The access token expired and no fresh one arrived in an ``auth`` frame: refresh, reconnect.
    TOKEN_EXPIRED = 4004
    # The outbound queue overflowed (the client reads too slowly): reconnect and resume.
    TOO_SLOW = 4008
    # The user opened more than ``realtime.max_sockets_per_user`` sockets; this was the oldest.
    REPLACED = 4009
    # Nothing received for ``realtime.heartbeat_timeout_seconds``.
    HEARTBEAT_TIMEOUT = 4010


class AuthFrame(msgspec.Struct, tag="auth", tag_field="type", kw_only=True):
    """First frame of a connection without a subprotocol token, or a fresh token later."""

    token: str
    # Optional: where to resume from, saving a separate ``resume`` frame.
    last_event_id: int | None = None


class PingFrame(msgspec.Struct, tag="ping", tag_field="type", kw_only=True):
    pass


class PongFrame(msgspec.Struct, tag="pong", tag_field="type", kw_only=True):
    """The answer to the server's ``ping``."""


class ResumeFrame(msgspec.Struct, tag="resume", tag_field="type", kw_only=True):
    # None: start from now (the ``event_id`` of ``hello``).
    last_event_id: int | None = None


ClientFrame = AuthFrame | PingFrame | PongFrame | ResumeFrame

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


def control_frame(type_: str, **data: Any) -> bytes:
    """A server control frame: ``{"type": ..., "data": {...}}`` without an ``event_id``."""
    return _encoder.encode({"type": type_, "data": data})


PING = control_frame("ping")
PONG = control_frame("pong")


def frame_event_id(frame: bytes) -> int:
    """The ``event_id`` of an event frame, read from its fixed prefix without decoding it all.

    Frames are built by the publish script as ``{"event_id":<n>,...``.
    """
    end = frame.index(b",", 12)
    return int(frame[12:end])


def is_event_frame(raw: bytes) -> bool:
    return raw.startswith(b'{"event_id":')
