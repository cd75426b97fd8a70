"""Settings of the accounts area: production refuses placeholder secrets and the log backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from wingman.config import Settings, SettingsError, load_settings

PRODUCTION_READY = {
    "WINGMAN_ENV": "production",
    "WINGMAN_SECURITY__SECRET_KEY": "s" * 40,
    "WINGMAN_SECURITY__JWT_KEY": "j" * 40,
    "WINGMAN_SECURITY__OTP_HASH_KEY": "o" * 40,
    "WINGMAN_DELIVERY__EMAIL": "smtp",
    "WINGMAN_DELIVERY__SMTP__HOST": "mail.example.org",
    "WINGMAN_DELIVERY__SMS": "webhook",
    "WINGMAN_DELIVERY__WEBHOOK__URL": "https://sms.example.org/send",
    "WINGMAN_DELIVERY__WEBHOOK__SECRET": "w" * 32,
}


def _load(tmp_path: Path, **env: str) -> Settings:
    (tmp_path / "wingman.toml").write_text("")
    return load_settings(
        {
            "WINGMAN_CONFIG": str(tmp_path / "wingman.toml"),
            "WINGMAN_TUNING": str(tmp_path / "tuning.toml"),
            **env,
        }
    )


def test_production_ready_settings_load(tmp_path: Path) -> None:
    assert _load(tmp_path, **PRODUCTION_READY)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"WINGMAN_SECURITY__JWT_KEY": ""}, "security.jwt_key"),
        ({"WINGMAN_SECURITY__JWT_KEY": "short"}, "security.jwt_key"),
        (
            {"WINGMAN_SECURITY__OTP_HASH_KEY": "insecure-development-otp-key-change-me"},
            "otp_hash_key",
        ),
        ({"WINGMAN_DELIVERY__EMAIL": "log"}, "delivery.email: the log backend is refused"),
        ({"WINGMAN_DELIVERY__SMS": "log"}, "delivery.sms: the log backend is refused"),
        ({"WINGMAN_DELIVERY__WEBHOOK__SECRET": "short"}, "delivery.webhook.secret"),
        ({"WINGMAN_DELIVERY__SMTP__HOST": ""}, "delivery.smtp.host"),
        ({"WINGMAN_AUTH__STATUS_CACHE_SECONDS": "120"}, "auth.status_cache_seconds"),
    ],
)
def test_unsafe_production_settings_are_refused(
    tmp_path: Path, override: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.")):
        _load(tmp_path, **{**PRODUCTION_READY, **override})


def test_development_defaults_use_the_log_backend(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    assert settings.delivery.email == settings.delivery.sms == "log"
    assert settings.otp.max_attempts == 5
