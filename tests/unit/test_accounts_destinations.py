"""Normalising destinations: pure functions, checked with hypothesis."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wingman.db.models import OtpChannel
from wingman.domain.accounts.destinations import InvalidDestination, mask, normalise

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


@given(channel=st.sampled_from(list(OtpChannel)), raw=st.text(max_size=400))
def test_any_text_is_normalised_or_refused_cleanly(channel: OtpChannel, raw: str) -> None:
    try:
        value = normalise(channel, raw)
    except InvalidDestination:
        return
    # A normal form is stable and fits the column and its constraints.
    assert normalise(channel, value) == value
    assert len(value) <= 320
    if channel is OtpChannel.SMS:
        assert E164.match(value)
    else:
        assert value == value.lower()
        assert "@" in value


@given(email=st.emails())
def test_emails_match_whatever_their_case(email: str) -> None:
    try:
        lower = normalise(OtpChannel.EMAIL, email.lower())
    except InvalidDestination:
        return
    assert normalise(OtpChannel.EMAIL, email.upper()) == lower
    assert normalise(OtpChannel.EMAIL, f"  {email} ") == lower


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (415) 555-0123", "+14155550123"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+49 30 901820", "+4930901820"),
    ],
)
def test_phone_numbers_become_e164(raw: str, expected: str) -> None:
    assert normalise(OtpChannel.SMS, raw) == expected


@pytest.mark.parametrize("raw", ["0301234567", "+1 555", "+999 1234567", "call me", ""])
def test_bad_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidDestination):
        normalise(OtpChannel.SMS, raw)


def test_mask_hides_most_of_the_destination() -> None:
    assert mask(OtpChannel.EMAIL, "someone@example.org") == "s***@example.org"
    masked = mask(OtpChannel.SMS, "+14155550123")
    assert masked.startswith("+1415")
    assert masked.endswith("23")
    assert "5550" not in masked
