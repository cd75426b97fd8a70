"""Status reads web figures from a real HTTP server exposing Prometheus text on /metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec
import pytest

from wingman.config import ServerSettings, Settings
from wingman.ops.health import NO_METRICS, web_rows


class Exposition:
    """Each scrape sees 50 more requests (5 of them 500s), all under 50 ms."""

    def __init__(self) -> None:
        self.scrapes = 0

    def render(self) -> bytes:
        self.scrapes += 1
        total = 50 * self.scrapes
        return (
            "# TYPE wingman_requests_total counter\n"
            f'wingman_requests_total{{status_code="200"}} {total - total // 10}\n'
            f'wingman_requests_total{{status_code="500"}} {total // 10}\n'
            "# TYPE wingman_request_duration_seconds histogram\n"
            f'wingman_request_duration_seconds_bucket{{le="0.05"}} {total}\n'
            f'wingman_request_duration_seconds_bucket{{le="+Inf"}} {total}\n'
            f"wingman_request_duration_seconds_count {total}\n"
            "wingman_request_duration_seconds_sum 1.0\n"
            "# TYPE wingman_websocket_connections gauge\n"
            "wingman_websocket_connections 7\n"
        ).encode()


@pytest.fixture
def server() -> Iterator[tuple[int, Exposition]]:
    exposition = Exposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = exposition.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], exposition
    finally:
        httpd.shutdown()
        httpd.server_close()


def settings_on(port: int) -> Settings:
    return msgspec.structs.replace(Settings(), server=ServerSettings(port=port))


def test_rows_come_from_two_scrapes(server: tuple[int, Exposition]) -> None:
    port, exposition = server
    rows = {row.name: row for row in web_rows(settings_on(port), web_up=True, window_s=0.5)}
    assert exposition.scrapes == 2
    window = rows["requests/s"].figures["window_s"]
    assert rows["requests/s"].figures["value"] == pytest.approx(50 / window, rel=0.02)
    assert rows["error rate"].figures["value"] == pytest.approx(0.1)
    assert rows["p95"].figures["value"] == pytest.approx(47.5)  # 0.95 of the first 50 ms bucket
    assert rows["websockets"].value == "7"
    assert all(row.state == "ok" for row in rows.values())


def test_no_endpoint_is_not_available(server: tuple[int, Exposition]) -> None:
    from wingman.devstack.processes import free_port

    for row in web_rows(settings_on(free_port()), web_up=True, window_s=0.5):
        assert (row.state, row.value, row.figures) == ("n/a", NO_METRICS, {})
    down = web_rows(settings_on(server[0]), web_up=False, window_s=0.5)
    assert {row.value for row in down} == {"not available (web is down)"}
    assert server[1].scrapes == 0
