"""The rendered Prometheus configuration is one ``promtool check config`` accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.monitoring import monitoring_tool
from wingman.ops.monitoring import ScrapeTargets, alert_rules, prometheus_config


def test_default_config_scrapes_every_target_and_loads_the_rules(tmp_path: Path) -> None:
    text = prometheus_config(ScrapeTargets(), host="appliance")
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    result = subprocess.run(
        [monitoring_tool("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "rules found" in result.stdout
    parsed = yaml.safe_load(text)
    assert parsed["rule_files"] == [str(alert_rules())]
    targets = {
        (job["job_name"], group.get("labels", {}).get("role")): group["targets"]
        for job in parsed["scrape_configs"]
        for group in job["static_configs"]
    }
    assert targets == {
        ("wingman", None): ["127.0.0.1:8000"],
        ("node", None): ["127.0.0.1:9100"],
        ("postgres", None): ["127.0.0.1:9187"],
        ("redis", "queue"): ["127.0.0.1:9121"],
        ("redis", "cache"): ["127.0.0.1:9122"],
    }
