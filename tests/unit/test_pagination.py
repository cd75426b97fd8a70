"""Keyset cursors: a round trip gives back the position; any change to a cursor is refused."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.server.cursors import (
    InvalidCursor,
    Position,
    cursor_key,
    decode_cursor,
    encode_cursor,
)

KEY = cursor_key("test secret")
positions = st.builds(
    Position,
    at=st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC),
    ),
    id=st.uuids(),
)
kinds = st.sampled_from(["sessions", "messages", "profiles"])


def _raw(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@given(positions, kinds)
def test_round_trip(position: Position, kind: str) -> None:
    cursor = encode_cursor(KEY, kind, position)
    assert decode_cursor(KEY, kind, cursor) == position
    # Opaque and URL-safe: nothing to escape in a query string.
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@given(positions, kinds, st.data())
def test_any_flipped_bit_is_refused(position: Position, kind: str, data: st.DataObject) -> None:
    raw = bytearray(_raw(encode_cursor(KEY, kind, position)))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(InvalidCursor):
        decode_cursor(KEY, kind, _text(bytes(raw)))


@given(positions)
def test_another_listing_or_key_is_refused(position: Position) -> None:
    cursor = encode_cursor(KEY, "sessions", position)
    with pytest.raises(InvalidCursor):
        decode_cursor(KEY, "messages", cursor)
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor_key("another secret"), "sessions", cursor)


@given(st.text(max_size=300))
def test_arbitrary_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(KEY, "sessions", text)


@given(positions, st.integers(1, 40))
def test_truncated_cursor_is_refused(position: Position, cut: int) -> None:
    raw = _raw(encode_cursor(KEY, "sessions", position))
    with pytest.raises(InvalidCursor):
        decode_cursor(KEY, "sessions", _text(raw[: max(0, len(raw) - cut)]))


def test_position_is_microsecond_exact() -> None:
    position = Position(
        datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC),
        UUID("0190a000-0000-7000-8000-000000000001"),
    )
    assert decode_cursor(KEY, "messages", encode_cursor(KEY, "messages", position)) == position
