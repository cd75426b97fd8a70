"""Keyed hashes and random secrets for codes, destinations and refresh tokens.

Only HMAC-SHA256 digests are stored. The key (``security.otp_hash_key``) lives outside the
database, so a leaked dump cannot be brute-forced: a 6-digit code has only a million values, and
an unkeyed hash of it would fall in a second. Each use has its own ``purpose`` prefix, so a digest
made for one use can never be replayed as another (a code digest is not a token digest).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_DIGITS = 6


def keyed_hash(key: str, purpose: str, value: str) -> str:
    """Hex HMAC-SHA256 of ``value`` under ``key``, separated by ``purpose``."""
    message = f"{purpose}\x00{value}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def code_hash(key: str, request_id: str, code: str) -> str:
    """Digest of a code bound to its request, so equal codes of two requests differ at rest."""
    return keyed_hash(key, "otp-code", f"{request_id}:{code}")


def destination_hash(key: str, channel: str, destination: str) -> str:
    """Digest of a normalised destination: rate limits and lookups without storing the address."""
    return keyed_hash(key, "otp-destination", f"{channel}:{destination}")


def refresh_token_hash(key: str, token: str) -> str:
    return keyed_hash(key, "refresh-token", token)


def same_digest(a: str, b: str) -> bool:
    """Constant-time comparison: the time taken does not tell how many characters matched."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_code() -> str:
    """A uniformly random code of :data:`CODE_DIGITS` digits (leading zeros kept)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def new_refresh_token() -> str:
    """An opaque refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)
