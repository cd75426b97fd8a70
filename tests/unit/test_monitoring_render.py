"""What ``wingmanctl tune`` renders for the appliance's monitoring: retention, env files,
Alertmanager's receivers (checked by ``amtool`` in tests/integration/monitoring)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import msgspec
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.support.monitoring import settings_with
from wingman.config import Settings
from wingman.ops.alertmanager import alert_routes, alertmanager_config
from wingman.ops.appliance_monitoring import (
    RETENTION_MAX_MB,
    RETENTION_MIN_MB,
    monitoring_env,
    prometheus_retention,
    redis_exporter_env,
)
from wingman.ops.tune_appliance import monitoring_files
from wingman.ops.tune_files import FileChange


def receiver(settings: Settings) -> dict[str, object]:
    parsed = yaml.safe_load(alertmanager_config(settings))
    assert parsed["route"]["receiver"] == "admin"
    [only] = parsed["receivers"]
    assert isinstance(only, dict)
    return only


@given(st.integers(min_value=1024, max_value=64 * 1024 * 1024))
def test_retention_is_a_bounded_share_of_the_volume(disk_mb: int) -> None:
    retention = prometheus_retention(disk_mb)
    assert RETENTION_MIN_MB <= retention.size_mb.value <= RETENTION_MAX_MB
    assert retention.size_mb.value <= max(RETENTION_MIN_MB, disk_mb // 10)
    assert prometheus_retention(disk_mb * 2).size_mb.value >= retention.size_mb.value


def test_retention_follows_the_disk_between_its_bounds() -> None:
    assert prometheus_retention(40 * 1024).size_mb.value == 2048
    assert prometheus_retention(4 * 1024).size_mb.value == RETENTION_MIN_MB
    assert prometheus_retention(4 * 1024 * 1024).size_mb.value == RETENTION_MAX_MB
    env = monitoring_env(prometheus_retention(40 * 1024))
    assert "PROMETHEUS_RETENTION_SIZE=2048MB\n" in env
    assert "PROMETHEUS_RETENTION_TIME=30d\n" in env


def test_redis_exporter_env_names_its_role_port_and_password() -> None:
    env = redis_exporter_env("cache", redis_port=6380, password="secret")
    assert "REDIS_ADDR=redis://127.0.0.1:6380\n" in env
    assert "REDIS_PASSWORD=secret\n" in env
    assert "REDIS_EXPORTER_WEB_LISTEN_ADDRESS=127.0.0.1:9122\n" in env


def test_smtp_mails_the_admin_with_the_code_mail_settings() -> None:
    settings = settings_with(email="smtp", alert_email="admin@example.com")
    found = receiver(settings)
    [mail] = found["email_configs"]  # type: ignore[misc]
    assert mail["to"] == "admin@example.com"
    assert mail["smarthost"] == "mail.example.com:587"
    assert mail["auth_password"] == 'p"w: #1'  # JSON quoting keeps it whole
    assert mail["require_tls"] is True
    assert "webhook_configs" not in found
    assert alert_routes(settings) == ["mail to admin@example.com"]


def test_smtp_without_an_address_mails_nobody() -> None:
    settings = settings_with(email="smtp")
    assert receiver(settings) == {"name": "admin"}
    assert alert_routes(settings) == []


def test_the_code_webhook_carries_alerts_with_its_secret_as_bearer() -> None:
    found = receiver(settings_with(sms="webhook"))
    [hook] = found["webhook_configs"]  # type: ignore[misc]
    assert hook["url"] == "https://hooks.example.com/codes"
    assert hook["http_config"] == {"authorization": {"credentials": "s" * 20}}
    assert hook["send_resolved"] is True


def test_an_alert_url_wins_and_log_delivery_sends_nothing() -> None:
    found = receiver(settings_with(email="webhook", alert_url="http://127.0.0.1:9/alerts"))
    assert found["webhook_configs"][0]["url"] == "http://127.0.0.1:9/alerts"  # type: ignore[index]
    assert receiver(settings_with()) == {"name": "admin"}


def test_grouping_delays_come_from_the_settings() -> None:
    base = Settings()
    fast = msgspec.structs.replace(
        base,
        monitoring=msgspec.structs.replace(
            base.monitoring, group_wait_seconds=0.2, group_interval_seconds=2
        ),
    )
    route = json.loads(alertmanager_config(fast).split("\n", 2)[2])["route"]
    assert route["group_wait"] == "1s"  # Alertmanager's resolution
    assert route["group_interval"] == "2s"
    assert route["repeat_interval"] == "14400s"


def test_tune_writes_secrets_root_only(tmp_path: Path) -> None:
    files = {f.kind: f for f in monitoring_files(settings_with(sms="webhook"), tmp_path, tmp_path)}
    assert set(files) == {
        "prometheus",
        "monitoring-env",
        "alertmanager",
        "redis-exporter-queue",
        "redis-exporter-cache",
    }
    for kind in ("alertmanager", "redis-exporter-queue", "redis-exporter-cache"):
        assert stat.S_IMODE(files[kind].mode) == 0o600, kind
    prometheus = yaml.safe_load(files["prometheus"].text)
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:9093"
    ]
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:8000"]


def test_tune_diffs_hide_the_monitorings_secrets(tmp_path: Path) -> None:
    settings = settings_with(email="smtp", sms="webhook", alert_email="admin@example.com")
    for file in monitoring_files(settings, tmp_path, tmp_path):
        diff = FileChange(file, None).diff()
        for secret in ('p\\"w: #1', "s" * 20, "REDIS_PASSWORD=\n"):
            assert secret not in diff, (file.kind, secret)
    redis = next(f for f in monitoring_files(settings, tmp_path, tmp_path) if "exporter" in f.kind)
    assert "REDIS_PASSWORD=********" in FileChange(redis, None).diff()
