"""Security headers on every HTTP answer of the app, errors and refusals included.

An ASGI wrapper outside everything else, so a 404, a 429 from the connection cap, ``/metrics``
and the API docs carry the same headers as a handler's answer. It only adds a header the
answer does not have: a handler that sets its own wins.

- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options:
  DENY`` everywhere.
- ``Content-Security-Policy``: the API's JSON loads nothing (:data:`API_POLICY`); an HTML answer
  (the API docs page, Litestar's docs 404 page) may load this origin's own scripts, styles and
  images and fetch from it, nothing inline and nothing from elsewhere (:data:`PAGE_POLICY`).
- ``Cache-Control: no-store`` on answers to a request that carried credentials
  (``Authorization``) and on the sign-in routes' answers, which carry tokens: no shared or
  browser cache keeps a user's data or a token.

HSTS is the front proxy's business: it knows whether a publicly trusted certificate is in use,
and ``make run`` serves plain HTTP. WebSockets pass untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

API_POLICY = "default-src 'none'; frame-ancestors 'none'"
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
NO_STORE = (b"cache-control", b"no-store")


def security_headers(
    present: Sequence[tuple[bytes, bytes]], *, private: bool
) -> list[tuple[bytes, bytes]]:
    """The headers to add to an answer that already has ``present``."""
    given = {name.lower(): value for name, value in present}
    added = [header for header in ALWAYS if header[0] not in given]
    if b"content-security-policy" not in given:
        html = given.get(b"content-type", b"").lower().startswith(b"text/html")
        policy = PAGE_POLICY if html else API_POLICY
        added.append((b"content-security-policy", policy.encode()))
    if private and b"cache-control" not in given:
        added.append(NO_STORE)
    return added


class SecurityHeaders:
    """ASGI wrapper: see the module docstring. ``token_paths`` are path prefixes whose answers
    are private whoever asks (the sign-in routes)."""

    def __init__(self, app: ASGIApp, token_paths: tuple[str, ...]) -> None:
        self.app = app
        self.token_paths = token_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        private = scope["path"].startswith(self.token_paths) or any(
            name == b"authorization" for name, _ in scope["headers"]
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers += security_headers(headers, private=private)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
