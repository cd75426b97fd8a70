"""The web server refuses to start in production with placeholder account secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_serve_refuses_default_secrets_in_production(tmp_path: Path) -> None:
    config = tmp_path / "wingman.toml"
    config.write_text('env = "production"\n[security]\nsecret_key = "' + "s" * 40 + '"\n')
    result = subprocess.run(
        [sys.executable, "-m", "wingman", "serve", "--port", "1"],
        env={"WINGMAN_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "security.jwt_key" in result.stderr
    assert "security.otp_hash_key" in result.stderr
    assert "Traceback" not in result.stderr
