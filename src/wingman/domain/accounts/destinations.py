"""Validating and normalising where a code is sent: an email address or a phone number.

Normal forms are what the accounts table stores and what the destination hash is made of, so the
same person always lands on the same account: emails per RFC 5321/5322 (``email-validator``),
lower-cased whole (addresses are matched case-insensitively); phone numbers in E.164
(``phonenumbers``), which needs a leading ``+`` and country code since the server cannot guess
the caller's region.
"""

from __future__ import annotations

import email_validator
import phonenumbers

from wingman.db.models import OtpChannel

MAX_DESTINATION_LENGTH = 320


class InvalidDestination(ValueError):
    """The destination is not a valid address for its channel; the message says why."""


def normalise(channel: OtpChannel, raw: str) -> str:
    """The normal form of ``raw`` for ``channel``, or :class:`InvalidDestination`."""
    value = raw.strip()
    if not value or len(value) > MAX_DESTINATION_LENGTH:
        raise InvalidDestination("must be between 1 and 320 characters")
    if channel is OtpChannel.EMAIL:
        return normalise_email(value)
    return normalise_phone(value)


def normalise_email(value: str) -> str:
    try:
        # No DNS lookup: it would make the response time depend on the domain (and the network).
        result = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InvalidDestination(f"not a valid email address: {exc}") from None
    return result.normalized.lower()


def normalise_phone(value: str) -> str:
    if not value.startswith("+"):
        raise InvalidDestination("phone numbers need the international form, e.g. +14155550100")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidDestination(f"not a valid phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidDestination("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(channel: OtpChannel | str, destination: str) -> str:
    """A form safe for logs: ``j***@example.org``, ``+4915*****67``."""
    if str(channel) == OtpChannel.EMAIL.value:
        local, _, domain = destination.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(destination) <= 6:
        return "*" * len(destination)
    return destination[:5] + "*" * (len(destination) - 7) + destination[-2:]
