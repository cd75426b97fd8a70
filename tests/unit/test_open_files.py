"""The open-file limit ``wingmanctl serve`` sets for the connections a worker is planned to hold."""

from __future__ import annotations

import resource

from hypothesis import given
from hypothesis import strategies as st

from wingman.server.open_files import RESERVED_DESCRIPTORS, allowance

limits = st.integers(min_value=64, max_value=1 << 20)


@given(wanted=st.integers(min_value=1, max_value=100_000), soft=limits, hard=limits)
def test_allowance_within_the_hard_limit_and_never_lower(wanted: int, soft: int, hard: int) -> None:
    soft = min(soft, hard)
    plan = allowance(wanted, soft, hard)
    assert soft <= plan.soft_limit <= max(soft, hard)
    assert 1 <= plan.connections <= wanted
    assert plan.as_configured == (plan.connections == wanted)
    if hard >= wanted + RESERVED_DESCRIPTORS:
        assert plan.as_configured
        assert plan.connections + RESERVED_DESCRIPTORS <= plan.soft_limit
    else:
        assert plan.soft_limit == max(soft, hard)


def test_shell_limit_is_raised_to_what_the_connections_need() -> None:
    plan = allowance(10_000, 1024, 524_288)
    assert plan.soft_limit == 10_000 + RESERVED_DESCRIPTORS
    assert plan.connections == 10_000


def test_low_hard_limit_holds_fewer_connections_and_says_so() -> None:
    plan = allowance(10_000, 1024, 4096)
    assert plan.soft_limit == 4096
    assert plan.connections == 4096 - RESERVED_DESCRIPTORS
    assert not plan.as_configured


def test_unlimited_hard_limit() -> None:
    plan = allowance(5_000, 1024, resource.RLIM_INFINITY)
    assert plan.soft_limit == 5_000 + RESERVED_DESCRIPTORS
    assert plan.as_configured
