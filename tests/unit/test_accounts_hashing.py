"""Codes, tokens and keyed hashes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wingman.domain.accounts import hashing


def test_codes_are_six_digits_and_vary() -> None:
    codes = {hashing.new_code() for _ in range(200)}
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert len(codes) > 150


@given(key=st.text(min_size=1), other=st.text(min_size=1), value=st.text())
def test_hashes_depend_on_key_and_purpose(key: str, other: str, value: str) -> None:
    digest = hashing.keyed_hash(key, "a", value)
    assert len(digest) == 64
    assert hashing.same_digest(digest, hashing.keyed_hash(key, "a", value))
    assert digest != hashing.keyed_hash(key, "b", value)
    if other != key:
        assert digest != hashing.keyed_hash(other, "a", value)


def test_code_hash_is_bound_to_its_request() -> None:
    assert hashing.code_hash("k", "r1", "123456") != hashing.code_hash("k", "r2", "123456")


def test_refresh_tokens_are_long_and_unique() -> None:
    tokens = {hashing.new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(token) >= 43 for token in tokens)
