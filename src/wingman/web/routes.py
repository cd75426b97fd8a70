"""Serving the web client: the page at ``/`` and its files under ``/web/<digest>/<file>``.

- The files are read once per process. ``digest`` is taken from their bytes, so they are cached
  for a year (``immutable``) and a new version changes their addresses. The page itself is never
  cached (``no-cache``): it names the files in force.
- The JavaScript files are ES modules that import each other by relative paths, so they all live
  under one digest folder and need no import map or bundler.
- The page carries its own Content-Security-Policy, stricter than the API docs page's: this
  origin's scripts, styles and connections only (``connect-src 'self'`` covers the same-origin
  WebSocket), nothing inline, no plugin, frame, form target or base URL, and Trusted Types
  enforced with no policy, so no script can write markup from a string (the client builds its
  elements with the DOM, never ``innerHTML``).
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

from litestar import Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

STATIC = files(__package__) / "static"
# What the page loads, with the type each is served as (Litestar adds the UTF-8 charset).
ASSET_TYPES = {
    "style.css": "text/css",
    "app.js": "text/javascript",
    "account.js": "text/javascript",
    "api.js": "text/javascript",
    "chat.js": "text/javascript",
    "profiles.js": "text/javascript",
    "realtime.js": "text/javascript",
    "views.js": "text/javascript",
}
IMMUTABLE = "public, max-age=31536000, immutable"
ASSET_ROUTE = "wingman-web-asset"
# Written into index.html where the files' folder goes.
ASSETS_PLACEHOLDER = "{{assets}}"
CLIENT_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)


class WebClient:
    """The page and its files, read once; :meth:`router` serves them."""

    def __init__(self) -> None:
        self.assets = {name: (STATIC / name).read_bytes() for name in ASSET_TYPES}
        digest = hashlib.sha256()
        for name, body in self.assets.items():
            digest.update(f"{name}\0{len(body)}\0".encode())
            digest.update(body)
        self.digest = digest.hexdigest()[:16]
        page = (STATIC / "index.html").read_text()
        self.page = page.replace(ASSETS_PLACEHOLDER, f"/web/{self.digest}").encode()

    def router(self) -> Router:
        client = self

        # Public: the page signs in with the API itself (the auth middleware skips these).
        @get("/", include_in_schema=False, exclude_from_auth=True)
        async def page() -> Response[bytes]:
            headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CLIENT_POLICY}
            return Response(client.page, media_type="text/html", headers=headers)

        @get(
            "/web/{digest:str}/{file:str}",
            name=ASSET_ROUTE,
            include_in_schema=False,
            exclude_from_auth=True,
        )
        async def asset(digest: FromPath[str], file: FromPath[str]) -> Response[bytes]:
            if digest != client.digest or file not in client.assets:
                raise NotFoundException(f"No web client file {file!r} in this version.")
            return Response(
                client.assets[file],
                media_type=ASSET_TYPES[file],
                headers={"Cache-Control": IMMUTABLE},
            )

        return Router(path="/", route_handlers=[page, asset])
