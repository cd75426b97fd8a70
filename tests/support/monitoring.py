"""The monitoring tools (Debian's prometheus, alertmanager and exporter packages) for the
monitoring tests.

Found by :func:`tests.support.tools.required_tool`: a failure as root or in CI (where
``scripts/bootstrap`` installs them), a skip naming the package otherwise.
"""

from __future__ import annotations

import msgspec

from tests.support.tools import required_tool
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
    return required_tool(name, PACKAGES[name])


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
