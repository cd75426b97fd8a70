"""The alert rules pass ``promtool check rules`` and their unit tests (``promtool test rules``).

The unit tests in appliance/monitoring/tests/ make every alert fire when it should and stay quiet
when it should not; here they also must cover every alert the rules define.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.monitoring import monitoring_tool

MONITORING = Path(__file__).resolve().parents[3] / "appliance" / "monitoring"
RULES = MONITORING / "alerts.yml"
UNIT_TESTS = sorted((MONITORING / "tests").glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [monitoring_tool("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=MONITORING / "tests",
        check=False,
    )


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_every_alert_has_severity_runbook_and_a_delay() -> None:
    anchors = (MONITORING.parents[1] / "docs" / "monitoring.md").read_text()
    for rule in alerts():
        name = str(rule["alert"])
        assert rule.get("for"), name
        assert rule["labels"] in ({"severity": "critical"}, {"severity": "warning"}), name  # type: ignore[comparison-overlap]
        annotations: dict[str, str] = rule["annotations"]  # type: ignore[assignment]
        assert {"summary", "description", "runbook"} <= set(annotations), name
        assert annotations["runbook"] == f"docs/monitoring.md#{name.lower()}", name
        # The anchor exists: a heading named after the alert.
        assert f"\n### {name}\n" in anchors, name


def test_unit_tests_pass_and_cover_every_alert() -> None:
    result = promtool("test", "rules", *(path.name for path in UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS)
    tested: dict[str, set[str]] = {}
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case["alert_rule_test"]:
                kind = "fires" if check["exp_alerts"] else "quiet"
                tested.setdefault(check["alertname"], set()).add(kind)
    assert tested == {str(rule["alert"]): {"fires", "quiet"} for rule in alerts()}
