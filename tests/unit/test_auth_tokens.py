"""Access tokens: remembered once verified, but never past their expiry and never for a token
that differs by one byte or was signed with another key."""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest
from litestar.exceptions import NotAuthorizedException

from wingman.config import AuthSettings, SecuritySettings, Settings
from wingman.server import auth
from wingman.server.auth import (
    ALGORITHM,
    AccessToken,
    AccessTokenExpired,
    decode_access_token,
    issue_access_token,
)


def settings(minutes: int = 15, secret: str = "s" * 48) -> Settings:
    base = Settings(security=SecuritySettings(jwt_key=secret))
    return msgspec.structs.replace(base, auth=AuthSettings(access_token_minutes=minutes))


def test_a_verified_token_is_remembered_and_still_checked() -> None:
    config = settings()
    token = issue_access_token(config, uuid.uuid4(), "free", "user")
    first, _ = decode_access_token(config, token)
    second, _ = decode_access_token(config, token)
    assert first == second
    # The second check was answered from memory: the very same verified token object.
    checks = {"issuer": [config.auth.issuer], "require_claims": ["exp", "iat", "sub"]}
    one = AccessToken.decode(token, config.security.jwt_key, ALGORITHM, **checks)
    two = AccessToken.decode(token, config.security.jwt_key, ALGORITHM, **checks)
    assert one is two
    # One byte changed in the signature: checked afresh, and refused.
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(NotAuthorizedException):
        decode_access_token(config, tampered)
    # Another key: refused, although the token text is remembered.
    with pytest.raises(NotAuthorizedException):
        decode_access_token(settings(secret="t" * 48), token)
    # Other checks (another accepted issuer): checked afresh, and refused.
    with pytest.raises(NotAuthorizedException):
        AccessToken.decode(token, config.security.jwt_key, ALGORITHM, issuer=["elsewhere"])
    # The same checks again: still remembered.
    assert AccessToken.decode(token, config.security.jwt_key, ALGORITHM, **checks) is one


def test_an_expired_token_is_refused_even_when_remembered() -> None:
    config = settings(minutes=0)  # exp == iat: expired from the first second on
    token = issue_access_token(config, uuid.uuid4(), "free", "user")
    with pytest.raises(AccessTokenExpired):
        decode_access_token(config, token)
    assert token not in auth._verified  # not remembered
    time.sleep(0.01)  # a later call, so nothing remembered from the first can answer it
    with pytest.raises(AccessTokenExpired):
        decode_access_token(config, token)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_TOKENS", 3)
    monkeypatch.setattr(auth, "_verified", {})
    config = settings()
    tokens = [issue_access_token(config, uuid.uuid4(), "free", "user") for _ in range(5)]
    for token in tokens:
        decode_access_token(config, token)
    assert list(auth._verified) == tokens[2:]
