"""The application factory: ``create_app(settings) -> Litestar``.

Building the app opens no connection; Redis clients and the database engine open in lifespans.
Granian calls :func:`create_app` with no argument in each worker process (``factory=True``), which
loads the settings from files and environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Router
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from wingman import __version__
from wingman.config import QUEUE_NAMES, Settings, load_settings
from wingman.db.migrations import head_revision
from wingman.domain.accounts.controllers import AuthController, MeController
from wingman.domain.admin.controllers import AdminUserController
from wingman.domain.admin.queue_controllers import AdminQueueController
from wingman.domain.ai.controllers import MessageController
from wingman.domain.catalog.cache import CatalogCache, invalidation_listener
from wingman.domain.catalog.controllers import (
    AdminConfigController,
    AdminToneController,
    CatalogController,
)
from wingman.domain.chat.controllers import ChatSessionController
from wingman.domain.chat.hot_list import CachedSessionList
from wingman.domain.health.controllers import HealthController
from wingman.domain.imports.controllers import SessionImportController
from wingman.domain.privacy.admin_controllers import AdminPrivacyController
from wingman.domain.privacy.controllers import PrivacyController
from wingman.domain.profiles.controllers import ProfileController
from wingman.domain.realtime.asyncapi import asyncapi_document
from wingman.domain.realtime.controllers import realtime_lifespan, realtime_socket
from wingman.domain.realtime.events import event_bus
from wingman.queues import create_queue
from wingman.server.api_docs import ApiDocsPlugin
from wingman.server.auth import LastSeenTracker, UserStatusCache, create_jwt_auth
from wingman.server.cache import ReadCache, WriteBarrier
from wingman.server.client_ip import ClientAddresses
from wingman.server.cluster import Draining, cluster_lifespan
from wingman.server.compression import SKIP_COMPRESSION
from wingman.server.connection_cap import ConnectionCap
from wingman.server.database import alchemy_config
from wingman.server.errors import EXCEPTION_HANDLERS, problem_details_plugin
from wingman.server.header_limits import HeaderLimits
from wingman.server.logging import configure_logging
from wingman.server.metrics import mark_process_dead
from wingman.server.metrics_endpoint import metrics
from wingman.server.metrics_hooks import time_redis, watch_pool
from wingman.server.openapi import complete_document
from wingman.server.ratelimit import RateLimiter
from wingman.server.redis import RedisClients
from wingman.server.request_body import GuardedRequest
from wingman.server.request_limits import RequestLimits
from wingman.server.request_log import RequestLog
from wingman.server.request_metrics import RequestMetrics
from wingman.server.security_headers import SecurityHeaders
from wingman.server.unread_body import CloseOnUnreadBody
from wingman.web.routes import WebClient

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings, process="web")

    @asynccontextmanager
    async def redis_lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.redis = RedisClients.from_settings(settings.redis, process="web")
        app.state.events = event_bus(settings, app.state.redis)
        try:
            yield
        finally:
            await app.state.redis.close()

    @asynccontextmanager
    async def queues_lifespan(app: Litestar) -> AsyncIterator[None]:
        # Producers: handlers enqueue jobs after their transaction commits. The rate limiter
        # shares the queue-role Redis pool (opened by redis_lifespan, which runs first).
        app.state.queues = {name: create_queue(settings, name) for name in QUEUE_NAMES}
        app.state.rate_limiter = RateLimiter.on_redis(app.state.redis)
        try:
            yield
        finally:
            for queue in app.state.queues.values():
                await queue.disconnect()

    @asynccontextmanager
    async def catalog_lifespan(app: Litestar) -> AsyncIterator[None]:
        # Drops this process's tones/config cache when any process announces a change.
        async with invalidation_listener(app.state.redis.queue, app.state.catalog):
            yield

    jwt_auth = create_jwt_auth(settings)
    alchemy = alchemy_config(settings.database)

    @asynccontextmanager
    async def cache_lifespan(app: Litestar) -> AsyncIterator[None]:
        # Session list and detail reads, kept in the cache-role Redis; their versions in the
        # queue-role one, which never evicts.
        redis: RedisClients = app.state.redis
        app.state.read_cache = ReadCache(
            redis.cache, redis.queue_mux, settings.cache, mux=redis.cache_mux
        )
        yield

    @asynccontextmanager
    async def metrics_lifespan(app: Litestar) -> AsyncIterator[None]:
        # Storage figures for /metrics; this worker's live gauges go when it exits.
        time_redis(app.state.redis)
        watch_pool(alchemy.get_engine())
        try:
            yield
        finally:
            mark_process_dead()

    client_addresses = ClientAddresses(settings.server.trusted_proxies)
    api = Router(
        path=API_PREFIX,
        middleware=[RequestLimits()],
        route_handlers=[
            AuthController,
            MeController,
            PrivacyController,
            ProfileController,
            ChatSessionController,
            SessionImportController,
            MessageController,
            CatalogController,
            AdminToneController,
            AdminConfigController,
            AdminUserController,
            AdminQueueController,
            AdminPrivacyController,
            realtime_socket,
        ],
    )

    app = Litestar(
        route_handlers=[HealthController, metrics, api, WebClient().router()],
        plugins=[
            SQLAlchemyPlugin(config=alchemy),
            problem_details_plugin(),
        ],
        lifespan=[
            redis_lifespan,
            cluster_lifespan,
            queues_lifespan,
            catalog_lifespan,
            realtime_lifespan,
            cache_lifespan,
            metrics_lifespan,
        ],
        on_startup=[complete_document],
        on_app_init=[jwt_auth.on_app_init],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_class=GuardedRequest,
        state=State(
            {
                "settings": settings,
                "migration_head": head_revision(),
                # Set on the stop signal: /health/ready answers 503 while the process drains.
                "draining": Draining(),
                "user_status": UserStatusCache(settings.auth.status_cache_seconds),
                "last_seen": LastSeenTracker(),
                # The plugin's config: code outside handlers (the auth middleware) gets its engine.
                "alchemy": alchemy,
                "catalog": CatalogCache(),
                "client_addresses": client_addresses,
            }
        ),
        # JSON above 1 KB: brotli when the client accepts it, else gzip, else as is. Only HTTP
        # responses are compressed (the WebSocket has its own permessage-deflate, if any), and
        # not answers compressed already (API docs assets, export archives: server/compression.py).
        compression_config=CompressionConfig(
            backend="brotli",
            brotli_gzip_fallback=True,
            minimum_size=1024,
            exclude_opt_key=SKIP_COMPRESSION,
        ),
        cors_config=(
            CORSConfig(allow_origins=settings.server.cors_allow_origins)
            if settings.server.cors_allow_origins
            else None
        ),
        # 413 above it; the appliance's front proxy refuses the same size before it gets here.
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Wingman",
            version=__version__,
            description="REST API of the Wingman conversation assistant.",
            path="/api/docs",
            render_plugins=[
                ApiDocsPlugin(asyncapi=partial(asyncapi_document, version=__version__))
            ],
        ),
        # structlog owns logging (configured above); Litestar's own config would replace it.
        logging_config=None,
        debug=False,
    )
    # The cached first page of sessions is answered before routing (see its module).
    app.asgi_handler = CachedSessionList(app.asgi_handler, app, jwt_auth)
    # Outside routing, so every request is capped and logged, matched or not (refusals too).
    server = settings.server
    capped = ConnectionCap(app.asgi_handler, client_addresses, server.max_connections_per_ip)
    app.asgi_handler = RequestLog(
        HeaderLimits(capped, server.max_header_bytes, server.max_header_line_bytes),
        client_addresses,
    )
    # A write's cached reads are invalidated after it commits, before the client sees the answer.
    app.asgi_handler = WriteBarrier(app.asgi_handler)
    # Outside the refusal layers, so capped and unmatched requests are counted as well.
    app.asgi_handler = RequestMetrics(app.asgi_handler)
    # Every answer, refusals and errors included, carries the security headers.
    app.asgi_handler = SecurityHeaders(app.asgi_handler, token_paths=(f"{API_PREFIX}/auth/",))
    # Outermost: an answer given before the body was read (any refusal above) closes the
    # connection and says so, or the client's next request on it would be lost.
    app.asgi_handler = CloseOnUnreadBody(app.asgi_handler)
    return app
