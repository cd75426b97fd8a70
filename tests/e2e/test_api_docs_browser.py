"""The API docs page (``/api/docs``) renders in a real browser with no internet access.

A real ``wingmanctl serve`` answers; Debian's Chromium, headless, loads the page with every
host but 127.0.0.1 made unreachable (names resolve to nothing, and any proxied request goes to a
port where nothing listens), runs its scripts and prints the resulting DOM. Swagger UI draws one
``opblock`` per operation (per tag it is listed under), so the count proves that the vendored
bundle, the start-up script and the OpenAPI document all loaded from the server itself.

The control shows that the count can fail, and that the browser really is offline: a copy of the
page served by a local HTTP server of the test's own draws every operation with its bundle
served beside it, and none at all with the bundle taken from a CDN (as Litestar's stock plugin
links it).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import chromium_path
from tests.support.web import running_server
from wingman.config import Settings
from wingman.devstack.processes import free_port

pytestmark = pytest.mark.e2e

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Where Litestar's stock Swagger plugin takes the bundle from.
CDN_BUNDLE = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"
# Virtual time the page may run for: Swagger UI fetches the document and renders in well under
# a second of it; virtual time does not pass while a request is in flight.
VIRTUAL_TIME_MS = 20_000


class OpblockCounter(HTMLParser):
    """Counts elements whose class list holds ``opblock`` itself (not ``opblock-summary``...)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.swagger_root = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if "opblock" in (values.get("class") or "").split():
            self.count += 1
        if values.get("id") == "swagger-ui":
            self.swagger_root = True


def opblocks(dom: str) -> int:
    counter = OpblockCounter()
    counter.feed(dom)
    counter.close()
    assert counter.swagger_root, f"not the docs page: {dom[:500]}"
    return counter.count


def operations(document: dict[str, Any]) -> int:
    """Operation blocks Swagger UI draws for ``document``: one per tag of each operation."""
    return sum(
        max(1, len(operation.get("tags", [])))
        for path in document["paths"].values()
        for method, operation in path.items()
        if method in HTTP_METHODS
    )


def rendered_dom(browser: str, url: str, profile: Path) -> str:
    """The DOM of ``url`` once its scripts ran, with every host but 127.0.0.1 unreachable."""
    dead_port = free_port()  # nothing listens there
    command = [
        browser,
        "--headless",
        "--dump-dom",
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        # No name resolves but the loopback address the server is reached at...
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        # ...and whatever would go out by address goes to a proxy that is not there.
        f"--proxy-server=http://127.0.0.1:{dead_port}",
        "--proxy-bypass-list=127.0.0.1",
        f"--user-data-dir={profile}",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        "--no-default-browser-check",
    ]
    if os.geteuid() == 0:
        command.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    result = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def browser() -> str:
    return chromium_path()


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(settings, tmp_path_factory.mktemp("api-docs")) as web:
        yield web.url


def test_the_docs_page_draws_every_operation_offline(
    browser: str, server: str, tmp_path: Path
) -> None:
    document = httpx.get(f"{server}/api/docs/openapi.json", timeout=10).json()
    expected = operations(document)
    assert expected > 20  # the whole API, not an empty document
    dom = rendered_dom(browser, f"{server}/api/docs", tmp_path / "profile")
    assert opblocks(dom) == expected


@pytest.fixture(params=["local", "cdn"])
def copied_page(request: pytest.FixtureRequest, server: str) -> Iterator[tuple[str, str]]:
    """(where the bundle comes from, URL): a copy of the docs page, its document and assets,
    served by a local HTTP server (one origin, as the real page), its bundle linked either from
    that server or from a CDN."""
    page = httpx.get(f"{server}/api/docs", timeout=10)
    assert page.status_code == 200
    links = _asset_paths(page.text)
    bundle = next(path for path in links if path.endswith("/swagger-ui-bundle.js"))
    html = page.text if request.param == "local" else page.text.replace(bundle, CDN_BUNDLE)
    files: dict[str, tuple[str, bytes]] = {"/api/docs": ("text/html", html.encode())}
    for path in ("/api/docs/openapi.json", *links):
        response = httpx.get(f"{server}{path}", timeout=10)
        assert response.status_code == 200, path
        files[path] = (response.headers["content-type"], response.content)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = files.get(self.path)
            if found is None:
                self.send_error(404)
                return
            kind, body = found
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield request.param, f"http://127.0.0.1:{httpd.server_address[1]}/api/docs"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _asset_paths(html: str) -> list[str]:
    """The ``src`` and ``href`` paths on this origin that a page links."""
    found = []
    for attribute in ('src="', 'href="'):
        for part in html.split(attribute)[1:]:
            value = part.split('"', 1)[0]
            if value.startswith("/"):
                found.append(value)
    return found


def test_control_a_page_whose_bundle_is_out_of_reach_draws_nothing(
    browser: str, server: str, copied_page: tuple[str, str], tmp_path: Path
) -> None:
    """The copy draws every operation with its bundle at hand, none with it on a CDN: the count
    fails when the script does not load, and the browser reaches no outside host."""
    source, url = copied_page
    expected = operations(httpx.get(f"{server}/api/docs/openapi.json", timeout=10).json())
    dom = rendered_dom(browser, url, tmp_path / "profile")
    assert opblocks(dom) == (expected if source == "local" else 0)
