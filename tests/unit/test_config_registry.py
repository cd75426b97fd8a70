"""The config key registry: defaults, validation that names the field, the public subset."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.domain.catalog import registry
from wingman.domain.catalog.registry import (
    REGISTRY,
    InvalidConfigValue,
    MessageLimits,
    RateLimits,
    UnknownConfigKey,
    public_view,
    to_json,
    validate,
)


def test_every_default_survives_a_round_trip_through_json() -> None:
    for key, spec in REGISTRY.items():
        stored = msgspec.json.decode(msgspec.json.encode(to_json(spec.default)))
        assert validate(key, stored) == spec.default


def test_rate_limit_defaults_are_the_design_values() -> None:
    limits = to_json(RateLimits())
    assert limits == {
        "anon": {"limit": 100, "period": "hour"},
        "user": {"limit": 10_000, "period": "hour"},
        "premium": {"limit": 50_000, "period": "hour"},
        "otp": {"limit": 5, "period": "minute"},
        "chat": {"limit": 60, "period": "minute"},
        "chat_premium": {"limit": 300, "period": "minute"},
        "ai": {"limit": 20, "period": "minute"},
        "ai_premium": {"limit": 100, "period": "minute"},
        "export": {"limit": 3, "period": "day"},
    }


def test_public_fields_exist_on_their_schema() -> None:
    for spec in REGISTRY.values():
        assert set(spec.public_fields) <= set(spec.schema.__struct_fields__)


def test_public_view_leaves_out_private_keys_and_fields() -> None:
    view = public_view({})
    assert "ai" not in view
    assert "anon" not in view["rate_limits"]
    assert view["limits.message"] == {"max_content_length": 4000}


@given(st.integers(min_value=1, max_value=100_000))
def test_any_length_from_one_is_accepted(length: int) -> None:
    value = validate("limits.message", {"max_content_length": length})
    assert value == MessageLimits(max_content_length=length)
    assert public_view({"limits.message": value})["limits.message"]["max_content_length"] == length


@given(st.integers(max_value=0) | st.integers(min_value=100_001))
def test_lengths_out_of_range_are_refused_naming_the_field(length: int) -> None:
    with pytest.raises(InvalidConfigValue) as refused:
        validate("limits.message", {"max_content_length": length})
    assert refused.value.error.field == "max_content_length"


@given(
    st.sampled_from(sorted(RateLimits.__struct_fields__)),
    st.one_of(st.text(max_size=5), st.floats(), st.booleans(), st.none()),
)
def test_a_non_integer_limit_names_its_nested_field(scope: str, limit: Any) -> None:
    with pytest.raises(InvalidConfigValue) as refused:
        validate("rate_limits", {scope: {"limit": limit, "period": "minute"}})
    assert refused.value.error.field == f"{scope}.limit"


@given(
    st.text(min_size=1, max_size=20).filter(
        lambda name: name not in registry.Features.__struct_fields__
    )
)
def test_unknown_fields_are_refused_by_name(name: str) -> None:
    with pytest.raises(InvalidConfigValue) as refused:
        validate("features", {name: True})
    assert refused.value.error.field == name


def test_a_non_object_value_is_refused_at_the_top() -> None:
    with pytest.raises(InvalidConfigValue) as refused:
        validate("ai", [1, 2])
    assert refused.value.error.field == ""
    assert "object" in refused.value.error.message


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(UnknownConfigKey):
        validate("no.such.key", {})


def test_tier_allowances_follow_the_scope_and_tier() -> None:
    limits = RateLimits()
    assert limits.for_tier("api", premium=False).notation == "10000/hour"
    assert limits.for_tier("api", premium=True).notation == "50000/hour"
    assert limits.for_tier("chat", premium=False).notation == "60/minute"
    assert limits.for_tier("chat", premium=True).notation == "300/minute"
    assert limits.for_tier("ai", premium=False).notation == "20/minute"
    assert limits.for_tier("ai", premium=True).notation == "100/minute"
