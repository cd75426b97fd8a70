"""``wingmanctl lb render``: the HAProxy config as shipped, checked by HAProxy itself."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cli import bad_settings_env, run_cli
from wingman.config import RealtimeSettings
from wingman.devstack.processes import free_port
from wingman.ops.balancer import Backend, BalancerConfig, BalancerConfigError, render


def test_config_checks_readiness_and_outlives_the_realtime_heartbeat() -> None:
    realtime = RealtimeSettings(heartbeat_interval_seconds=25, heartbeat_timeout_seconds=4000)
    text = render(BalancerConfig([Backend.parse("a=10.0.0.5:8000")], realtime=realtime))
    assert "http-check send meth GET uri /health/ready ver HTTP/1.1" in text
    assert "balance leastconn" in text
    # No stickiness.
    assert "cookie" not in text
    assert "stick-table" not in text
    assert "stick on" not in text
    assert "option forwardfor" in text
    assert "server a 10.0.0.5:8000" in text
    tunnel = int(text.split("timeout tunnel ")[1].split("s")[0])
    assert tunnel >= 2 * 4000


def test_bad_backends_are_refused() -> None:
    with pytest.raises(BalancerConfigError):
        Backend.parse("10.0.0.5")
    with pytest.raises(BalancerConfigError):
        render(BalancerConfig([Backend.parse("a=h:1"), Backend.parse("a=h:2")]))


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_rendered_file_is_accepted_by_haproxy(tmp_path: Path) -> None:
    env = bad_settings_env(tmp_path, "")
    output = tmp_path / "haproxy.cfg"
    result = run_cli(
        "wingman.ctl", "lb", "render", "--backend", "10.0.0.5:8000",
        "--backend", "b=10.0.0.6:8000", "--bind", "127.0.0.1:8080", "-o", str(output), env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "haproxy -c accepts it" in result.stdout
    check = subprocess.run(["haproxy", "-c", "-f", str(output)], capture_output=True, check=False)
    assert check.returncode == 0
    refused = run_cli("wingman.ctl", "lb", "render", "--backend", "nope", env=env)
    assert refused.returncode == 64


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_no_node_to_answer_is_a_problem_503_with_retry_after(tmp_path: Path) -> None:
    # A node whose port nothing listens on: every attempt is refused.
    backend = Backend("127.0.0.1", free_port(), "gone")
    bind = f"127.0.0.1:{free_port()}"
    config = tmp_path / "haproxy.cfg"
    config.write_text(render(BalancerConfig([backend], bind=bind, maxconn=100)))
    haproxy = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = httpx.get(f"http://{bind}/api/v1/me", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "haproxy did not listen"
                time.sleep(0.1)
    finally:
        haproxy.terminate()
        haproxy.wait(10)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "2"
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "urn:wingman:problem:unavailable"
    assert answer.json()["status"] == 503
