"""Alertmanager's configuration, rendered from Wingman's settings (docs/monitoring.md).

Alerts reach the admin through the backend that carries e-mailed sign-in codes
(``delivery.email``), using Alertmanager's own receivers:

- ``smtp``: mail to ``monitoring.alert_email`` through ``delivery.smtp`` (``email_configs``);
- the code webhook (a channel set to ``webhook``) or ``monitoring.alert_webhook_url``:
  Alertmanager's webhook JSON posted there (``webhook_configs``), with the webhook secret as a
  bearer token so the gateway can tell the sender;
- neither: the alerts stay visible in Prometheus and Alertmanager, and go nowhere.

The file is JSON, which YAML reads as it is: no value (a password, a URL) can break its quoting.
It holds the SMTP password and the webhook secret, so it is written root-only and the service
reads a private copy (``LoadCredential=``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from wingman.config import Settings

RECEIVER = "admin"
HEADER = (
    "# Alertmanager for this Wingman host: rendered from the settings by `wingmanctl tune`;\n"
    "# do not edit (docs/monitoring.md).\n"
)


class AlertmanagerConfigError(RuntimeError):
    """``amtool check-config`` refused the rendered config (or amtool is missing)."""


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def alert_webhook_url(settings: Settings) -> str:
    """Where alerts are posted; empty when no webhook is configured for them."""
    delivery = settings.delivery
    if settings.monitoring.alert_webhook_url:
        return settings.monitoring.alert_webhook_url
    if "webhook" in (delivery.email, delivery.sms):
        return delivery.webhook.url
    return ""


def alert_routes(settings: Settings) -> list[str]:
    """How alerts reach the admin, in words (``mail to …``, ``webhook …``); empty: nowhere."""
    routes = []
    if settings.delivery.email == "smtp" and settings.monitoring.alert_email:
        routes.append(f"mail to {settings.monitoring.alert_email}")
    if url := alert_webhook_url(settings):
        routes.append(f"webhook {url}")
    return routes


def alertmanager_config(settings: Settings) -> str:
    """``alertmanager.yml`` for these settings."""
    delivery, monitoring = settings.delivery, settings.monitoring
    config: dict[str, Any] = {
        "route": {
            "receiver": RECEIVER,
            "group_by": ["alertname", "severity"],
            "group_wait": _duration(monitoring.group_wait_seconds),
            "group_interval": _duration(monitoring.group_interval_seconds),
            "repeat_interval": _duration(monitoring.repeat_interval_seconds),
        },
    }
    receiver: dict[str, Any] = {"name": RECEIVER}
    if delivery.email == "smtp" and monitoring.alert_email:
        smtp = delivery.smtp
        mail: dict[str, Any] = {
            "to": monitoring.alert_email,
            "from": smtp.sender,
            # Port 465 is implicit TLS to Alertmanager; STARTTLS is required unless "none".
            "smarthost": f"{smtp.host}:{smtp.port}",
            "require_tls": smtp.tls == "starttls",
            "send_resolved": True,
            "headers": {"Subject": "[Wingman] {{ .CommonLabels.alertname }} ({{ .Status }})"},
        }
        if smtp.username:
            mail |= {"auth_username": smtp.username, "auth_password": smtp.password}
        receiver["email_configs"] = [mail]
    if url := alert_webhook_url(settings):
        hook: dict[str, Any] = {"url": url, "send_resolved": True}
        if delivery.webhook.secret:
            hook["http_config"] = {"authorization": {"credentials": delivery.webhook.secret}}
        receiver["webhook_configs"] = [hook]
    config["receivers"] = [receiver]
    return HEADER + json.dumps(config, indent=2) + "\n"


def amtool_binary() -> str:
    found = shutil.which("amtool") or shutil.which("amtool", path="/usr/bin")
    if found is None:
        raise AlertmanagerConfigError("amtool is missing (Debian package prometheus-alertmanager)")
    return found


def check(text: str) -> None:
    """Run ``amtool check-config`` on ``text``; :class:`AlertmanagerConfigError` if refused."""
    with tempfile.TemporaryDirectory(prefix="wingman-alertmanager-") as scratch:
        path = Path(scratch) / "alertmanager.yml"
        path.write_text(text)
        result = subprocess.run(
            [amtool_binary(), "check-config", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        raise AlertmanagerConfigError(
            f"amtool check-config refused the config: {lines[-1] if lines else '(no message)'}"
        )
