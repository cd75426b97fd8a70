"""Opaque keyset cursors: pure encode/decode, no I/O.

A cursor names the last row of a page by its sort key (a timestamp and a UUID). It is the
msgspec (MessagePack) encoding of ``[kind, microseconds since the epoch, id bytes]`` followed by
a truncated HMAC-SHA256 tag, in unpadded base64url. The tag makes a cursor tamper-evident: a
client cannot forge a position (or reuse a sessions cursor on messages), and anything that does
not decode and verify is rejected as :class:`InvalidCursor`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from uuid import UUID

import msgspec

TAG_BYTES = 16
# Far more than any cursor needs; stops a client from making the server decode megabytes.
MAX_CURSOR_CHARS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidCursor(ValueError):
    """The cursor was not made by this server for this listing."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the sort key of its last row."""

    at: datetime
    id: UUID


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:TAG_BYTES]


def _micros(at: datetime) -> int:
    delta = at.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_cursor(key: bytes, kind: str, position: Position) -> str:
    """The opaque cursor for ``position`` in the listing named ``kind``."""
    body = msgspec.msgpack.encode([kind, _micros(position.at), position.id.bytes])
    return base64.urlsafe_b64encode(body + _tag(key, body)).rstrip(b"=").decode("ascii")


def decode_cursor(key: bytes, kind: str, cursor: str) -> Position:
    """The position a cursor from :func:`encode_cursor` names; :class:`InvalidCursor` otherwise."""
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor("cursor is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("cursor is not base64url") from None
    body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if len(raw) <= TAG_BYTES or not hmac.compare_digest(tag, _tag(key, body)):
        raise InvalidCursor("cursor signature does not match")
    # Only reached for bytes this server signed, so a failure here means a changed format.
    try:
        found_kind, micros, id_bytes = msgspec.msgpack.decode(body, type=tuple[str, int, bytes])
        position = Position(_EPOCH + timedelta(microseconds=micros), UUID(bytes=id_bytes))
    except (msgspec.DecodeError, ValueError, OverflowError):
        raise InvalidCursor("cursor payload is malformed") from None
    if found_kind != kind:
        raise InvalidCursor("cursor belongs to another listing")
    return position


@lru_cache(maxsize=4)
def cursor_key(secret: str) -> bytes:
    """The cursor signing key, derived from the server secret (never the secret itself); asked
    for by every chat request, so derived once."""
    return hmac.new(secret.encode(), b"wingman:pagination-cursor", hashlib.sha256).digest()
