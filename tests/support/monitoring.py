"""The monitoring tools (Debian's prometheus, alertmanager and exporter packages) for the
monitoring tests.

``scripts/bootstrap`` installs them when it runs as root, as CI does; there a missing tool is a
failure. A developer who bootstraps without root gets a skip that says what to install.
"""

from __future__ import annotations

import os
import shutil

import msgspec
import pytest

from wingman.config import Settings

PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


def monitoring_tool(name: str) -> str:
    """The path of ``name``; fails as root or in CI when it is missing, else skips with a reason."""
    found = shutil.which(name)
    if found:
        return found
    why = (
        f"{name} is missing: install it with `sudo apt-get install {PACKAGES[name]}` "
        "(or run scripts/bootstrap as root)"
    )
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def settings_with(
    *, email: str = "log", sms: str = "log", alert_email: str = "", alert_url: str = ""
) -> Settings:
    """Default settings with code delivery and alert routing as given (SMTP and webhook set)."""
    base = Settings()
    delivery = msgspec.structs.replace(
        base.delivery,
        email=email,
        sms=sms,
        smtp=msgspec.structs.replace(
            base.delivery.smtp, host="mail.example.com", username="u", password='p"w: #1'
        ),
        webhook=msgspec.structs.replace(
            base.delivery.webhook, url="https://hooks.example.com/codes", secret="s" * 20
        ),
    )
    monitoring = msgspec.structs.replace(
        base.monitoring, alert_email=alert_email, alert_webhook_url=alert_url
    )
    return msgspec.structs.replace(base, delivery=delivery, monitoring=monitoring)
