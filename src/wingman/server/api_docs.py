"""The API docs page (``/api/docs``), served whole by Wingman: it works with no internet access.

Litestar's render plugins load their user interface from a CDN, so the page stays blank on a host
that cannot reach it, and the browser tells a third party who reads the docs. This plugin serves
a pinned Swagger UI vendored in ``api_docs_ui/`` (its README gives the version, licence and
checksums) from the app itself:

- the page links the assets under ``/api/docs/assets/<digest>/<file>``, where ``digest`` is taken
  from the assets' bytes, so they are cached for a year (``immutable``) and an upgrade that
  changes them changes their addresses;
- each asset is gzipped once per process, off the event loop, and kept: the bundle takes ~0.1 s
  to compress, and done per request (as the app's compression layer would) that is a stall
  anyone could cause again and again on this public route;
- nothing is inline: the page's start-up code is ``api_docs_ui/init.js``, so the page's
  Content-Security-Policy (server/security_headers.py) allows this origin's files and nothing else.

Beside the OpenAPI document it serves the WebSocket's AsyncAPI document at
``/api/docs/asyncapi.json``, public like the rest of ``/api/docs``. The app passes in the function
that builds it (``domain/realtime/asyncapi.py``); it is built and encoded once per process, on
first request.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from html import escape
from importlib.resources import files
from typing import Any

import anyio
import msgspec
from litestar import Request, Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.params import FromPath

from wingman.server.compression import SKIP_COMPRESSION

ASSET_DIR = files(__package__) / "api_docs_ui"
# What the page loads, with the type each is served as (Litestar adds the UTF-8 charset).
ASSET_TYPES = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "init.js": "text/javascript",
}
IMMUTABLE = "public, max-age=31536000, immutable"
ASSET_ROUTE = "wingman-api-docs-asset"
ASYNCAPI_ROUTE = "wingman-asyncapi"


def load_assets() -> tuple[str, dict[str, bytes]]:
    """The assets' bytes by file name, and the digest that names this set of them."""
    assets = {name: (ASSET_DIR / name).read_bytes() for name in ASSET_TYPES}
    digest = hashlib.sha256()
    for name, body in assets.items():
        digest.update(f"{name}\0{len(body)}\0".encode())
        digest.update(body)
    return digest.hexdigest()[:16], assets


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip (every browser's does; ``q=0`` refuses)."""
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() in ("gzip", "*"):
            weight = params.strip().removeprefix("q=")
            try:
                return float(weight or 1) > 0
            except ValueError:
                return False
    return False


class ApiDocsPlugin(OpenAPIRenderPlugin):
    """Swagger UI from the app's own assets, at the OpenAPI root (``/api/docs``)."""

    def __init__(self, asyncapi: Callable[[], dict[str, Any]] | None = None) -> None:
        super().__init__(path="/", favicon="", style="")
        self.digest, self.assets = load_assets()
        self.gzipped: dict[str, bytes] = {}
        self.build_asyncapi = asyncapi
        self.asyncapi: bytes | None = None

    def asset_path(self, request: Request[Any, Any, Any], name: str) -> str:
        return request.app.route_reverse(ASSET_ROUTE, digest=self.digest, file=name)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = escape(f"{openapi_schema['info']['title']} API")
        spec = escape(self.get_openapi_json_route(request))
        css = self.asset_path(request, "swagger-ui.css")
        bundle = self.asset_path(request, "swagger-ui-bundle.js")
        init = self.asset_path(request, "init.js")
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{spec}"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
""".encode()

    def receive_router(self, router: Router) -> None:
        @get(
            "/assets/{digest:str}/{file:str}",
            name=ASSET_ROUTE,
            include_in_schema=False,
            opt={SKIP_COMPRESSION: True},  # gzipped here, once per process
        )
        async def asset(
            request: Request[Any, Any, Any], digest: FromPath[str], file: FromPath[str]
        ) -> Response[bytes]:
            if digest != self.digest or file not in self.assets:
                raise NotFoundException(f"No API docs asset {file!r} in this version.")
            headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
            body = self.assets[file]
            if accepts_gzip(request.headers.get("accept-encoding", "")):
                if file not in self.gzipped:
                    # Two first requests may both compress: the same bytes, so no harm.
                    self.gzipped[file] = await anyio.to_thread.run_sync(gzip.compress, body)
                body = self.gzipped[file]
                headers["Content-Encoding"] = "gzip"
            return Response(body, media_type=ASSET_TYPES[file], headers=headers)

        router.register(asset)
        build = self.build_asyncapi
        if build is None:
            return

        @get("/asyncapi.json", name=ASYNCAPI_ROUTE, include_in_schema=False, sync_to_thread=False)
        def asyncapi() -> Response[bytes]:
            if self.asyncapi is None:
                # A few milliseconds; two first requests may both build it: the same bytes.
                self.asyncapi = msgspec.json.encode(build())
            return Response(self.asyncapi, media_type="application/json")

        router.register(asyncapi)
