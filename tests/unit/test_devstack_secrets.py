"""`wingmanctl dev up` makes the accounts secrets once, into owner-only files."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from wingman.devstack.stack import DevStack


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "var")
    first = stack.state()
    assert len(first.jwt_key) >= 32
    assert len(first.otp_hash_key) >= 32
    assert first.jwt_key != first.otp_hash_key
    assert DevStack(tmp_path / "var").state() == first

    settings = tomllib.loads(stack.settings_file.read_text())
    assert settings["security"]["jwt_key"] == first.jwt_key
    assert settings["security"]["otp_hash_key"] == first.otp_hash_key
    for path in (stack.settings_file, stack.state_file):
        assert path.stat().st_mode & 0o077 == 0


def test_a_folder_from_before_gets_its_secrets_added(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "var")
    state = stack.state()
    old = json.loads(stack.state_file.read_text())
    del old["jwt_key"], old["otp_hash_key"]
    stack.state_file.write_text(json.dumps(old))

    upgraded = DevStack(tmp_path / "var").state()
    assert upgraded.postgres_password == state.postgres_password
    assert len(upgraded.jwt_key) >= 32
    assert json.loads(stack.state_file.read_text())["jwt_key"] == upgraded.jwt_key
