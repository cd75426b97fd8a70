"""Prometheus and the exporters against a real development stack, as on the appliance.

One stack (``DevStack.up``: PostgreSQL, both Redis roles, web, workers) and one monitoring set
from Debian's packages (Prometheus with the shipped alert rules, the node, PostgreSQL and Redis
exporters, on free loopback ports, everything in a temporary folder) for the module. Prometheus
scrapes and evaluates every second here, so the data and the alert states come fast; the alert
rules themselves are the production ones, unchanged.

Once the stack has served one reply, its ``ai`` worker is stopped and one more reply is posted,
which waits. Then: every target is up; every dashboard panel's query evaluates and the core ones
return data; ``WingmanRepliesStuck`` goes pending and then firing within its stated delay (15 s
of waiting + 30 s ``for``), counted from when the reply was queued, and reaches the admin's
webhook (an HTTP server in this test) through a real Alertmanager whose config is rendered from
the settings, as on the appliance: the code webhook's URL and secret, and a grouping wait of 1 s
instead of 30 s (``monitoring.group_wait_seconds``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import select

from tests.support.accounts import create_caller
from tests.support.monitoring import monitoring_tool
from wingman.config import Settings, load_settings
from wingman.db.models import Message, ProcessingStatus
from wingman.devstack.processes import free_port, pid_alive, wait_for
from wingman.devstack.stack import DevStack
from wingman.ops.alertmanager import alertmanager_config
from wingman.ops.monitoring import ScrapeTargets, dashboards, prometheus_config
from wingman.server.database import create_engine

pytestmark = pytest.mark.e2e

# What each panel's query is given for Grafana's own variables.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s"}
# Panels that must show data on any running stack with one reply done (by dashboard file).
CORE_PANELS = {
    "wingman-service.json": {
        "Requests per second",
        "Request latency",
        "5xx share",
        "Requests in flight",
        "AI replies",
        "Queue depth",
        "Oldest waiting job",
        "WebSocket users",
        "Database pool",
        "Redis command latency (p95)",
    },
    "wingman-host.json": {"CPU busy", "Load", "Memory", "Disk free", "Network"},
    "wingman-engines.json": {
        "PostgreSQL up",
        "PostgreSQL connections",
        "PostgreSQL transactions",
        "PostgreSQL database size",
        "Redis up",
        "Redis memory",
        "Redis commands",
        "Redis clients",
    },
}
# WingmanRepliesStuck: 15 s of waiting, then `for: 30s` (appliance/monitoring/alerts.yml).
STUCK_DELAY_S = 15 + 30
# A scrape and an evaluation each second, and a second of slack for a busy machine.
STUCK_SLACK_S = 5
# From firing to the webhook: Prometheus sends at once, Alertmanager waits group_wait (1 s here).
DELIVERY_SLACK_S = 5
ALERT_SECRET = "e2e-alert-webhook-secret-0123456789"


class AlertInbox:
    """The admin's webhook: records each notice Alertmanager posts, with when it came."""

    def __init__(self) -> None:
        self.notices: list[tuple[float, dict[str, str], dict[str, Any]]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                inbox.notices.append((time.monotonic(), dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Monitored:
    stack: DevStack
    base_url: str
    settings: Settings
    prometheus: str
    logs: Path
    inbox: AlertInbox
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # The reply left waiting once the ai worker was stopped, and when it was queued.
    stuck: tuple[str, float] | None = None

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert answer.status_code == 200, (expr, body)
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def api(self, path: str) -> Any:
        answer = httpx.get(f"{self.prometheus}/api/v1/{path}", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]


def start(monitored: Monitored, name: str, command: list[str], env: dict[str, str]) -> None:
    log = (monitored.logs / f"{name}.log").open("ab")
    monitored.processes[name] = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=monitored.logs,
        start_new_session=True,
    )
    log.close()


@pytest.fixture(scope="module")
def monitored() -> Iterator[Monitored]:
    tools = {
        name: monitoring_tool(name)
        for name in (
            "prometheus",
            "prometheus-node-exporter",
            "prometheus-postgres-exporter",
            "prometheus-redis-exporter",
            "prometheus-alertmanager",
        )
    }
    root = Path(tempfile.mkdtemp(prefix="wingman-monitoring-"))
    root.chmod(0o755)
    data = root / "var"
    stack = DevStack(data, web_port=free_port())
    logs = root / "monitoring"
    logs.mkdir()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    inbox = AlertInbox()
    try:
        base_url = stack.up(report=lambda _: None)
        state = stack.state()
        settings = load_settings(
            {"WINGMAN_CONFIG": str(data / "wingman.toml"), "WINGMAN_TUNING": str(data / "t.toml")}
        )
        ports = {
            name: free_port()
            for name in ("prometheus", "alertmanager", "node", "postgres", "queue", "cache")
        }
        monitored = Monitored(
            stack,
            base_url,
            settings,
            f"http://127.0.0.1:{ports['prometheus']}",
            logs,
            inbox,
            processes,
        )
        # Alertmanager, configured as the appliance's: code delivery by webhook (here, the
        # inbox) carries the alerts; only the grouping wait is shortened, through the settings.
        alerting = msgspec.structs.replace(
            settings,
            delivery=msgspec.structs.replace(
                settings.delivery,
                sms="webhook",
                webhook=msgspec.structs.replace(
                    settings.delivery.webhook, url=inbox.url, secret=ALERT_SECRET
                ),
            ),
            monitoring=msgspec.structs.replace(settings.monitoring, group_wait_seconds=1),
        )
        (logs / "alertmanager.yml").write_text(alertmanager_config(alerting))
        start(
            monitored,
            "alertmanager",
            [
                tools["prometheus-alertmanager"],
                f"--config.file={logs / 'alertmanager.yml'}",
                f"--storage.path={logs / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                "--cluster.listen-address=",
            ],
            {},
        )
        start(
            monitored,
            "node",
            [tools["prometheus-node-exporter"], f"--web.listen-address=127.0.0.1:{ports['node']}"],
            {},
        )
        dsn = stack.postgres(state).conninfo("wingman") + "?sslmode=disable"
        start(
            monitored,
            "postgres",
            [
                tools["prometheus-postgres-exporter"],
                f"--web.listen-address=127.0.0.1:{ports['postgres']}",
            ],
            {"DATA_SOURCE_NAME": dsn},
        )
        for role in ("queue", "cache"):
            server = stack.redis(role, state)
            start(
                monitored,
                f"redis-{role}",
                [
                    tools["prometheus-redis-exporter"],
                    f"-web.listen-address=127.0.0.1:{ports[role]}",
                    f"-redis.addr=redis://127.0.0.1:{server.port}",
                ],
                # The password by environment, not on the command line others can read.
                {"REDIS_PASSWORD": server.password},
            )
        config = logs / "prometheus.yml"
        config.write_text(
            prometheus_config(
                ScrapeTargets(
                    wingman=f"127.0.0.1:{state.web_port}",
                    node=f"127.0.0.1:{ports['node']}",
                    postgres=f"127.0.0.1:{ports['postgres']}",
                    redis_queue=f"127.0.0.1:{ports['queue']}",
                    redis_cache=f"127.0.0.1:{ports['cache']}",
                ),
                scrape_interval="1s",
                evaluation_interval="1s",
                host="e2e",
                alertmanager=f"127.0.0.1:{ports['alertmanager']}",
            )
        )
        start(
            monitored,
            "prometheus",
            [
                tools["prometheus"],
                f"--config.file={config}",
                f"--storage.tsdb.path={logs / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
            {},
        )
        # The scenario, while Prometheus starts: one reply done, then the ai worker stopped and
        # one reply left waiting (the fault the alert test watches; its clock starts here).
        asyncio.run(serve_one_reply_then_stop_the_ai_worker(monitored))
        yield monitored
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        stack.down(report=lambda _: None)
        inbox.close()
        shutil.rmtree(root, ignore_errors=True)


def logs_of(monitored: Monitored) -> str:
    return "\n".join(
        f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
        for path in sorted(monitored.logs.glob("*.log"))
    )


def test_every_target_is_up(monitored: Monitored) -> None:
    def targets() -> dict[str, str]:
        try:
            active = monitored.api("targets")["activeTargets"]
        except (httpx.HTTPError, AssertionError):
            return {}
        return {f"{t['labels']['job']}/{t['labels'].get('role', '')}": t["health"] for t in active}

    everything = {"wingman/", "node/", "postgres/", "redis/queue", "redis/cache"}
    assert wait_for(
        lambda: set(targets()) == everything and set(targets().values()) == {"up"}, 30, 0.5
    ), f"{targets()}\n{logs_of(monitored)}"
    # The exporters reach their engines, not only answer themselves.
    assert wait_for(lambda: bool(monitored.query("pg_up == 1")), 10, 0.5), logs_of(monitored)
    assert wait_for(lambda: len(monitored.query("redis_up == 1")) == 2, 10, 0.5)


async def reply(monitored: Monitored, content: str) -> str:
    """Post a message in a new session; the id of the AI reply it queued."""
    engine = create_engine(monitored.settings.database, "wingman-monitoring-test")
    try:
        caller = await create_caller(engine, monitored.settings)
    finally:
        await engine.dispose()
    async with httpx.AsyncClient(base_url=monitored.base_url, timeout=30) as client:
        answer = await client.post("/api/v1/sessions", json={}, headers=caller.headers)
        assert answer.status_code == 201, answer.text
        answer = await client.post(
            f"/api/v1/sessions/{answer.json()['id']}/messages",
            json={"content": content},
            headers=caller.headers,
        )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["ai_message"]["id"])


async def reply_status(monitored: Monitored, message_id: str) -> ProcessingStatus:
    engine = create_engine(monitored.settings.database, "wingman-monitoring-test")
    try:
        async with engine.connect() as connection:
            status: ProcessingStatus = await connection.scalar(
                select(Message.processing_status).where(Message.id == message_id)
            )
            return status
    finally:
        await engine.dispose()


async def serve_one_reply_then_stop_the_ai_worker(monitored: Monitored) -> None:
    message_id = await reply(monitored, "How was your weekend?")
    async with asyncio.timeout(60):
        while await reply_status(monitored, message_id) != ProcessingStatus.DONE:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.2)
    worker = monitored.stack.app_pid("worker-ai")
    assert worker is not None
    os.killpg(worker, signal.SIGTERM)
    assert wait_for(lambda: not pid_alive(worker), 30), "the ai worker did not stop"
    monitored.stuck = (await reply(monitored, "Anyone there?"), time.monotonic())


async def test_every_panel_query_evaluates_and_core_panels_have_data(
    monitored: Monitored,
) -> None:
    # The reply counted, and two scrapes of it for the rates.
    assert wait_for(lambda: bool(monitored.query("wingman_ai_replies_total")), 10, 0.5)
    assert wait_for(lambda: bool(monitored.query("rate(wingman_ai_replies_total[1m])")), 10, 0.5)

    empty: list[str] = []
    for path in dashboards():
        dashboard = json.loads(path.read_text())
        assert dashboard["templating"]["list"][0]["name"] == "datasource"
        titles = set()
        for panel in dashboard["panels"]:
            titles.add(panel["title"])
            assert panel["datasource"]["uid"] == "${datasource}"
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                result = monitored.query(expr)  # fails on a query Prometheus refuses
                core = panel["title"] in CORE_PANELS[path.name]
                # A rate needs two scrapes of its exporter; on a busy host a slow exporter's
                # second one can come late, so a core panel gets a few seconds more.
                if (
                    not result
                    and core
                    and not wait_for(lambda e=expr: bool(monitored.query(e)), 15, 0.5)
                ):
                    empty.append(f"{path.name}: {panel['title']}: {expr}")
        assert CORE_PANELS[path.name] <= titles, path.name
    assert not empty, "core panels without data:\n" + "\n".join(empty)


async def test_replies_stuck_fires_within_its_delay(monitored: Monitored) -> None:
    """The ai worker was stopped and a reply queued when the stack was set up."""
    assert monitored.stuck is not None
    message_id, queued = monitored.stuck

    def state() -> str | None:
        alerts = monitored.api("alerts")["alerts"]
        found = [a["state"] for a in alerts if a["labels"]["alertname"] == "WingmanRepliesStuck"]
        return found[0] if found else None

    seen: dict[str, float] = {}
    deadline = queued + STUCK_DELAY_S + STUCK_SLACK_S
    while time.monotonic() < deadline and "firing" not in seen:
        now = state()
        if now is not None:
            seen.setdefault(now, time.monotonic() - queued)
        await asyncio.sleep(0.1)
    assert "firing" in seen, f"not firing {STUCK_DELAY_S + STUCK_SLACK_S} s after: {seen}"
    # Pending first, once the reply had waited 15 s; firing only after the `for` of 30 s.
    assert 15 <= seen["pending"] < 15 + STUCK_SLACK_S, seen
    assert seen["firing"] >= STUCK_DELAY_S, seen
    assert await reply_status(monitored, message_id) == ProcessingStatus.QUEUED

    # Delivered: Prometheus -> Alertmanager -> the webhook, with the webhook's secret.
    def delivered() -> tuple[float, dict[str, str]] | None:
        for at, headers, body in list(monitored.inbox.notices):
            names = {alert["labels"]["alertname"] for alert in body["alerts"]}
            if body["status"] == "firing" and "WingmanRepliesStuck" in names:
                return at - queued, headers
        return None

    deadline = queued + STUCK_DELAY_S + STUCK_SLACK_S + DELIVERY_SLACK_S
    wait_for(lambda: delivered() is not None, max(0.0, deadline - time.monotonic()), 0.1)
    notice = delivered()
    assert notice is not None, (
        f"no notice at the webhook {STUCK_DELAY_S + STUCK_SLACK_S + DELIVERY_SLACK_S} s after: "
        f"{monitored.inbox.notices}\n{logs_of(monitored)}"
    )
    arrived, headers = notice
    assert arrived >= seen["firing"], (arrived, seen)
    assert headers.get("Authorization") == f"Bearer {ALERT_SECRET}"
