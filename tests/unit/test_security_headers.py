"""Which security headers an answer gets, and the docs assets' encoding: pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.server.api_docs import accepts_gzip
from wingman.server.security_headers import API_POLICY, PAGE_POLICY, security_headers

NAMES = [
    b"content-type",
    b"Cache-Control",
    b"content-security-policy",
    b"X-Frame-Options",
    b"x-content-type-options",
    b"referrer-policy",
    b"etag",
]
HEADERS = st.lists(st.tuples(st.sampled_from(NAMES), st.binary(min_size=1, max_size=20)))


@given(present=HEADERS, private=st.booleans())
def test_adds_each_header_once_and_never_one_the_answer_set(
    present: list[tuple[bytes, bytes]], private: bool
) -> None:
    added = security_headers(present, private=private)
    given_names = {name.lower() for name, _ in present}
    added_names = [name for name, _ in added]
    assert len(added_names) == len(set(added_names))
    assert not given_names & set(added_names)
    every = given_names | set(added_names)
    assert {b"x-content-type-options", b"referrer-policy", b"x-frame-options"} <= every
    assert b"content-security-policy" in every
    assert (b"cache-control" in every) is (private or b"cache-control" in given_names)


def test_policy_follows_the_content_type() -> None:
    page = dict(security_headers([(b"content-type", b"text/html; charset=utf-8")], private=False))
    api = dict(security_headers([(b"content-type", b"application/json")], private=True))
    assert page[b"content-security-policy"] == PAGE_POLICY.encode()
    assert api[b"content-security-policy"] == API_POLICY.encode()
    assert api[b"cache-control"] == b"no-store"
    assert b"cache-control" not in page
    # The page may load this origin's files only: nothing inline, nothing from elsewhere.
    assert "'unsafe-inline'" not in PAGE_POLICY
    assert "'unsafe-eval'" not in PAGE_POLICY
    assert "http" not in PAGE_POLICY


@pytest.mark.parametrize(
    ("accept_encoding", "gzip"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, GZIP;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000, br", False),
        ("br, identity", False),
        ("", False),
    ],
)
def test_docs_assets_are_gzipped_when_accepted(accept_encoding: str, gzip: bool) -> None:
    assert accepts_gzip(accept_encoding) is gzip
