"""Every way the settings route alerts gives a config ``amtool check-config`` accepts."""

from __future__ import annotations

import pytest

from tests.support.monitoring import monitoring_tool, settings_with
from wingman.config import Settings
from wingman.ops import alertmanager

CASES = {
    "nowhere (log delivery)": settings_with(),
    "mail": settings_with(email="smtp", alert_email="admin@example.com"),
    "the code webhook": settings_with(sms="webhook"),
    "mail and the webhook": settings_with(
        email="smtp", sms="webhook", alert_email="admin@example.com"
    ),
    "an alert URL": settings_with(alert_url="http://127.0.0.1:9/alerts"),
}


@pytest.mark.parametrize("settings", CASES.values(), ids=list(CASES))
def test_amtool_accepts_the_rendered_config(settings: Settings) -> None:
    monitoring_tool("amtool")
    alertmanager.check(alertmanager.alertmanager_config(settings))  # raises when refused


def test_amtool_refusal_is_reported() -> None:
    monitoring_tool("amtool")
    broken = alertmanager.alertmanager_config(Settings()).replace('"admin"', '"nobody"', 1)
    with pytest.raises(alertmanager.AlertmanagerConfigError, match="amtool check-config refused"):
        alertmanager.check(broken)
