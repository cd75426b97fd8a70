"""The pure parts of the rate limiter: rules, decisions and headers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wingman.server.ratelimit import RateDecision, RateRule, seconds_until


@given(reset_at=st.floats(-1e6, 1e10), now=st.floats(0, 1e10))
def test_retry_after_is_a_positive_whole_number(reset_at: float, now: float) -> None:
    seconds = seconds_until(reset_at, now)
    assert seconds >= 1
    assert seconds >= reset_at - now


def test_rules_parse_the_limits_notation() -> None:
    rule = RateRule.parse("otp:ip", "5/minute")
    assert (rule.scope, rule.item.amount, rule.item.get_expiry()) == ("otp:ip", 5, 60)
    assert RateRule.parse("api:user", "10000/hour").item.get_expiry() == 3600


def test_headers_tell_when_to_come_back_only_when_refused() -> None:
    allowed = RateDecision(allowed=True, limit=5, remaining=2, reset_after=30).headers()
    assert allowed == {"RateLimit-Limit": "5", "RateLimit-Remaining": "2", "RateLimit-Reset": "30"}
    refused = RateDecision(allowed=False, limit=5, remaining=0, reset_after=12).headers()
    assert refused["Retry-After"] == "12"
