"""The caller's first page of sessions from the read cache, answered before Litestar routes.

Every app start lists the caller's sessions, so ``GET /api/v1/sessions`` (no query: the first
page at the default size) is the hottest read there is, and almost always a cache hit. Through
Litestar a hit costs about six times a bare endpoint, nearly all of it in the framework's layers
(routing, the exception, authentication, rate-limit and compression middleware, signature
parsing, dependency injection, the response objects), not in the work. This layer does the same
work with the same code and answers directly:

1. the bearer token is checked exactly as the JWT middleware checks it
   (:func:`~wingman.server.auth.verify_bearer`), and the account through the same status cache
   (:func:`~wingman.server.auth.signed_in_user`);
2. the request is counted against the caller's allowance by the same function the rate-limit
   middleware uses, which remembers the decision in the scope, so a request that falls through
   is never counted twice;
3. the page is read from the read cache under the same key the route uses (one ``GET``: the
   caller's version came back with step 2's limiter call, server/cache.py), encoded by
   Litestar's own JSON encoder, and compressed as Litestar's compression middleware would
   (same encodings, threshold and compressor settings).

Anything but a hit for an active caller within their allowance falls through to Litestar,
untouched: no or a bad token, a disabled account, a refusal (the 429 comes from the middleware,
with the hit already counted), a cache miss or an unreachable cache, a query string, a request
with an ``Origin`` header (CORS belongs to Litestar). An integration test compares this layer's
answers with the route's, header for header and byte for byte.

It sits inside the request log, metrics, connection cap and write barrier, and sets
``path_template`` and ``user`` in the scope as routing and authentication would, so the request
is logged, counted and capped like any other.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import msgspec
from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.enums import CompressionEncoding, ScopeType
from litestar.middleware.compression.facade import CompressionFacade
from litestar.middleware.compression.gzip_facade import GzipCompression
from litestar.security.jwt import JWTAuth, Token
from litestar.serialization import encode_json
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from wingman.domain.catalog.request_limits import budget_headers, request_decision
from wingman.domain.chat.controllers import DEFAULT_PAGE, SESSION_LIST_CACHE, first_page_key
from wingman.domain.chat.schemas import SessionPage
from wingman.server.app_resources import Resources, app_resources
from wingman.server.auth import AuthUser, signed_in_user, verify_bearer
from wingman.server.cache import ReadCache

PATH = "/api/v1/sessions"
_JSON = (b"content-type", b"application/json")


class CachedSessionList:
    """ASGI layer: see the module docstring."""

    def __init__(self, app: ASGIApp, litestar: Litestar, jwt_auth: JWTAuth[AuthUser, Token]):
        self.app = app
        self.litestar = litestar
        self.jwt_auth = jwt_auth
        self.key = first_page_key(DEFAULT_PAGE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == ScopeType.HTTP
            and scope["path"] == PATH
            and scope["method"] == "GET"
            and not scope["query_string"]
        ):
            answer = await self._answer(scope)
            if answer is not None:
                headers, body = answer
                start: HTTPResponseStartEvent = {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": headers,
                }
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        """The response's headers and body, or None to leave the request to Litestar."""
        authorization = accept_encoding = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"accept-encoding" and accept_encoding is None:
                accept_encoding = value
            elif name == b"origin":
                return None
        if not authorization:
            return None
        resources = app_resources(self.litestar)
        try:
            # As the JWT middleware reads the header: whatever follows the first space.
            token = verify_bearer(self.jwt_auth, authorization.decode("latin-1").partition(" ")[-1])
            user = await signed_in_user(token, resources)
        except Exception:  # noqa: BLE001  # Litestar does the same again and answers the error
            return None
        scope["user"] = user
        scope["path_template"] = PATH
        budget = await self._budget(resources, scope)
        if budget is None:
            return None
        headers = [_JSON, *budget]
        cache: ReadCache = resources.read_cache
        raw = await cache.peek(SESSION_LIST_CACHE, user.id, self.key, scope)
        if raw is None:
            return None
        body = encode_json(msgspec.msgpack.decode(raw, type=SessionPage))
        encoding, body = compress(body, accept_encoding, self.litestar.compression_config)
        if encoding is not None:
            headers += [(b"content-encoding", encoding.encode()), (b"vary", b"Accept-Encoding")]
        headers.append((b"content-length", str(len(body)).encode()))
        return headers, body

    async def _budget(self, resources: Resources, scope: Scope) -> list[tuple[bytes, bytes]] | None:
        """The ``RateLimit-*`` headers of an allowed request (none when it is not counted), or
        None to leave it to Litestar: refused, or the allowances could not be read."""
        if not resources.settings.server.rate_limits:
            return []
        try:
            _, decision = await request_decision(resources, scope)
        except Exception:  # noqa: BLE001  # the database is down: Litestar answers the 503
            return None
        if decision is None:
            return []
        return budget_headers(decision) if decision.allowed else None


def compress(
    body: bytes, accept_encoding: bytes | None, config: CompressionConfig | None
) -> tuple[str | None, bytes]:
    """``body`` as Litestar's compression middleware sends it for that ``Accept-Encoding``: the
    configured encoding if named, else gzip if it is the fallback and named, else as it is;
    only from ``minimum_size`` on. Returns the encoding used (None: none) and the bytes."""
    if config is None or accept_encoding is None or len(body) < config.minimum_size:
        return None, body
    accepted = accept_encoding.decode("latin-1")
    facade: type[CompressionFacade]
    if config.compression_facade.encoding in accepted:
        facade, encoding = config.compression_facade, config.compression_facade.encoding
    elif config.gzip_fallback and CompressionEncoding.GZIP in accepted:
        facade, encoding = GzipCompression, CompressionEncoding.GZIP
    else:
        return None, body
    buffer = BytesIO()
    compressor: Any = facade(buffer=buffer, compression_encoding=encoding, config=config)
    compressor.write(body)
    compressor.close()
    return CompressionEncoding(encoding).value, buffer.getvalue()
