"""The pure checks behind the request guards: body nesting depth and header sizes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wingman.server.header_limits import oversized, server_buffer_bytes
from wingman.server.request_body import MAX_DEPTH, nested_deeper_than


def nest(depth: int, leaf: Any = 1, *, as_object: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value} if as_object else [value]
    return value


@given(depth=st.integers(0, 3 * MAX_DEPTH), as_object=st.booleans())
def test_depth_counts_arrays_and_objects(depth: int, as_object: bool) -> None:
    value = nest(depth, as_object=as_object)
    assert nested_deeper_than(value, MAX_DEPTH) == (depth > MAX_DEPTH)


def test_depth_is_the_deepest_branch_and_needs_no_recursion() -> None:
    wide = {"shallow": [1, 2, 3], "deep": nest(MAX_DEPTH), "text": "[[[[["}
    assert nested_deeper_than(wide, MAX_DEPTH)  # the object itself is one level more
    assert not nested_deeper_than(wide, MAX_DEPTH + 1)
    assert nested_deeper_than(nest(100_000), MAX_DEPTH)
    assert not nested_deeper_than("[" * 1000, 1)


def test_header_caps_count_each_line_as_sent() -> None:
    assert oversized([(b"x", b"a" * 100)], total_cap=200, line_cap=200) is None
    # "x: " + value + CRLF
    assert oversized([(b"x", b"a" * 195)], total_cap=200, line_cap=200) is None
    assert oversized([(b"x", b"a" * 196)], total_cap=1000, line_cap=200) is not None
    many = [(b"x", b"a" * 95)] * 3
    assert oversized(many, total_cap=300, line_cap=200) is None
    assert "total" in (oversized(many, total_cap=299, line_cap=200) or "")


def test_granian_holds_a_larger_cap_than_the_app() -> None:
    assert server_buffer_bytes(16384) == 65536
    assert server_buffer_bytes(100) == 8192  # hyper's floor
