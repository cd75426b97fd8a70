"""The one byte range a download request asks for, against Python's own slicing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.server.byte_ranges import ByteRange, RangeNotSatisfiable, requested_range

sizes = st.integers(min_value=0, max_value=5000)
positions = st.integers(min_value=0, max_value=6000)


def selected(part: ByteRange | None, size: int) -> range:
    return range(size) if part is None else range(part.start, part.end + 1)


@given(size=sizes, start=positions, end=positions | st.none())
def test_a_first_last_range_selects_what_a_slice_would(
    size: int, start: int, end: int | None
) -> None:
    header = f"bytes={start}-" + ("" if end is None else str(end))
    if end is not None and end < start:
        assert requested_range(header, size) is None  # malformed: the whole file
        return
    if start >= size:
        with pytest.raises(RangeNotSatisfiable):
            requested_range(header, size)
        return
    stop = size if end is None else end + 1
    assert selected(requested_range(header, size), size) == range(size)[start:stop]


@given(size=sizes, suffix=positions)
def test_a_suffix_range_selects_the_last_bytes(size: int, suffix: int) -> None:
    header = f"bytes=-{suffix}"
    if suffix == 0 or size == 0:
        with pytest.raises(RangeNotSatisfiable):
            requested_range(header, size)
        return
    assert selected(requested_range(header, size), size) == range(size)[-suffix:]


@pytest.mark.parametrize(
    "header",
    [None, "", "bytes=", "bytes=-", "items=0-5", "bytes=0-5,10-20", "bytes=a-b", "0-5", "bytes=5"],
)
def test_what_a_server_may_ignore_sends_the_whole_file(header: str | None) -> None:
    assert requested_range(header, 100) is None
