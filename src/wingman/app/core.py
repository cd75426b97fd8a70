"""The web app's wiring: routes, typed dependencies, lifespans and the layers around the router.

:class:`CorePlugin` is the one place that knows how the process is put together (the map is in
``docs/architecture.md``):

- every dependency a handler takes is a typed provider registered here (:func:`providers`);
  handlers never read ``app.state``;
- the lifespans are named functions, started in the order of :data:`LIFESPANS` and stopped in
  reverse; what they open goes into the process's :class:`~.app_resources.Resources`;
- the ASGI layers outside Litestar's router are built by :meth:`CorePlugin.outer_layers`, in
  the order of :data:`OUTER_LAYERS`.

Building the app opens no connection: Redis clients and the database engine open in lifespans.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Router
from litestar.config.app import AppConfig
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins import InitPluginProtocol, PluginProtocol
from litestar.types import ASGIApp
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from wingman import __version__
from wingman.config import QUEUE_NAMES, Settings
from wingman.db.migrations import head_revision
from wingman.domain.accounts.controllers import AuthController, MeController
from wingman.domain.admin.controllers import AdminUserController
from wingman.domain.admin.queue_controllers import AdminQueueController
from wingman.domain.catalog.cache import CatalogCache, invalidation_listener
from wingman.domain.catalog.controllers import (
    AdminConfigController,
    AdminToneController,
    CatalogController,
)
from wingman.domain.catalog.request_limits import RequestLimits
from wingman.domain.chat.controllers import ChatSessionController, MessageController
from wingman.domain.chat.hot_list import CachedSessionList
from wingman.domain.chat.replies import ReplyDispatch
from wingman.domain.health.controllers import HealthController
from wingman.domain.imports.controllers import SessionImportController
from wingman.domain.privacy.admin_controllers import AdminPrivacyController
from wingman.domain.privacy.controllers import PrivacyController
from wingman.domain.profiles.controllers import ProfileController
from wingman.domain.realtime.asyncapi import asyncapi_document
from wingman.domain.realtime.controllers import realtime_socket, running_dispatcher
from wingman.domain.realtime.dispatcher import Dispatcher
from wingman.domain.realtime.events import EventBus, event_bus
from wingman.queues import Queues, create_queue
from wingman.server.api_docs import ApiDocsPlugin
from wingman.server.app_resources import STATE_KEY, Resources, app_resources
from wingman.server.auth import UserStatusCache, create_jwt_auth
from wingman.server.cache import ReadCache, WriteBarrier
from wingman.server.client_ip import ClientAddresses
from wingman.server.cluster import Draining, membership
from wingman.server.compression import SKIP_COMPRESSION
from wingman.server.connection_cap import ConnectionCap
from wingman.server.database import alchemy_config
from wingman.server.dependencies import install as resolve_dependencies_in_sequence
from wingman.server.errors import EXCEPTION_HANDLERS, problem_details_plugin
from wingman.server.header_limits import HeaderLimits
from wingman.server.last_seen import LastSeenTracker
from wingman.server.metrics import mark_process_dead
from wingman.server.metrics_endpoint import metrics
from wingman.server.metrics_hooks import time_redis, watch_pool
from wingman.server.openapi import complete_document
from wingman.server.ratelimit import RateLimiter
from wingman.server.redis import RedisClients
from wingman.server.redis_mux import RedisMux
from wingman.server.request_body import GuardedRequest
from wingman.server.request_log import RequestLog
from wingman.server.request_metrics import RequestMetrics
from wingman.server.schema import API_PREFIX
from wingman.server.security_headers import SecurityHeaders
from wingman.server.unread_body import CloseOnUnreadBody
from wingman.web.routes import WebClient


def build_resources(settings: Settings) -> Resources:
    """What the app holds from the start; nothing here opens a connection."""
    return Resources(
        settings=settings,
        migration_head=head_revision(),
        alchemy=alchemy_config(settings.database),
        client_addresses=ClientAddresses(settings.server.trusted_proxies),
        draining=Draining(),
        user_status=UserStatusCache(
            settings.auth.status_cache_seconds, settings.auth.status_cache_heard_seconds
        ),
        last_seen=LastSeenTracker(),
        catalog=CatalogCache(),
    )


# ---- lifespans, in start order (Litestar stops them in reverse)


@asynccontextmanager
async def redis_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Both Redis roles (each with its pipelined connection) and the event bus on the queue
    role; first in, so it is the last to close."""
    resources = app_resources(app)
    resources.redis = RedisClients.from_settings(resources.settings.redis, process="web")
    resources.events = event_bus(resources.settings, resources.redis)
    try:
        yield
    finally:
        await resources.redis.close()


@asynccontextmanager
async def cluster_lifespan(app: Litestar) -> AsyncIterator[None]:
    """This process's membership heartbeat (``docs/scale-out.md``); an all-in-one node, which is
    part of no cluster, reports nothing."""
    resources = app_resources(app)
    if resources.settings.node.role == "all-in-one":
        yield
        return
    async with membership(resources.redis.queue, resources.settings, resources.draining):
        yield


@asynccontextmanager
async def queues_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Producers: handlers enqueue jobs after their transaction commits. The rate limiter shares
    the queue-role Redis pool; the reply dispatch publishes on the event bus, then enqueues."""
    resources = app_resources(app)
    settings = resources.settings
    resources.queues = {
        name: create_queue(settings, name, resources.redis.queue_mux) for name in QUEUE_NAMES
    }
    resources.rate_limiter = RateLimiter.on_redis(resources.redis)
    resources.reply_dispatch = ReplyDispatch(settings, resources.queues["ai"], resources.events)
    try:
        yield
    finally:
        for queue in resources.queues.values():
            await queue.disconnect()


@asynccontextmanager
async def catalog_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Drops this process's tones/config cache when any process announces a change."""
    resources = app_resources(app)
    async with invalidation_listener(resources.redis.queue, resources.catalog):
        yield


@asynccontextmanager
async def realtime_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The WebSocket dispatcher; it ends before the Redis clients close, so the sockets it still
    holds are closed first."""
    resources = app_resources(app)
    async with running_dispatcher(
        resources.redis.queue,
        resources.settings,
        resources.draining,
        on_account_change=resources.user_status.forget,
        on_hearing=resources.user_status.hearing,
    ) as resources.realtime:
        yield


@asynccontextmanager
async def cache_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Session list and detail reads, kept in the cache-role Redis; their versions in the
    queue-role one, which never evicts."""
    resources = app_resources(app)
    redis = resources.redis
    cache_settings = resources.settings.cache
    resources.read_cache = ReadCache(
        redis.cache, redis.queue_mux, cache_settings, mux=redis.cache_mux
    )
    yield


@asynccontextmanager
async def last_seen_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Writes the callers' last-seen notes in the background, and the last ones at shutdown.

    The database plugin's lifespan starts after this plugin's, so it stops first and disposes of
    the engine; the final write opens a connection again, which is closed here after it."""
    resources = app_resources(app)
    try:
        async with resources.last_seen.flushing(resources.autocommit_engine):
            yield
    finally:
        await resources.alchemy.get_engine().dispose()


@asynccontextmanager
async def metrics_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Storage figures for /metrics; this worker's live gauges go when it exits."""
    resources = app_resources(app)
    time_redis(resources.redis)
    watch_pool(resources.alchemy.get_engine())
    try:
        yield
    finally:
        mark_process_dead()


LIFESPANS = (
    redis_lifespan,
    cluster_lifespan,
    queues_lifespan,
    catalog_lifespan,
    realtime_lifespan,
    cache_lifespan,
    last_seen_lifespan,
    metrics_lifespan,
)


# ---- dependencies


def providers(resources: Resources) -> dict[str, Provide]:
    """Every process-wide dependency a handler may take, by name and type. The database
    (``db_engine``, ``db_session``) comes from the database plugin; ``autocommit_engine`` is its
    engine for reads and one-statement writes."""

    def settings() -> Settings:
        return resources.settings

    def migration_head() -> str:
        return resources.migration_head

    def draining() -> Draining:
        return resources.draining

    def client_addresses() -> ClientAddresses:
        return resources.client_addresses

    def user_status() -> UserStatusCache:
        return resources.user_status

    def catalog() -> CatalogCache:
        return resources.catalog

    def queue_redis() -> Redis:
        return resources.redis.queue

    def cache_redis() -> Redis:
        return resources.redis.cache

    def queue_mux() -> RedisMux:
        return resources.redis.queue_mux

    def cache_mux() -> RedisMux:
        return resources.redis.cache_mux

    def events() -> EventBus:
        return resources.events

    def queues() -> Queues:
        return resources.queues

    def rate_limiter() -> RateLimiter:
        return resources.rate_limiter

    def dispatch() -> ReplyDispatch:
        return resources.reply_dispatch

    def realtime() -> Dispatcher:
        return resources.realtime

    def read_cache() -> ReadCache:
        return resources.read_cache

    def autocommit_engine() -> AsyncEngine:
        return resources.autocommit_engine

    def last_seen() -> LastSeenTracker:
        return resources.last_seen

    provided: list[Callable[[], object]] = [
        settings,
        migration_head,
        draining,
        client_addresses,
        user_status,
        catalog,
        queue_redis,
        cache_redis,
        queue_mux,
        cache_mux,
        events,
        queues,
        rate_limiter,
        dispatch,
        realtime,
        read_cache,
        autocommit_engine,
        last_seen,
    ]
    return {f.__name__: Provide(f, sync_to_thread=False) for f in provided}


# ---- the layers around Litestar's router, innermost first

OUTER_LAYERS = (
    # The cached first page of sessions is answered before routing (see its module).
    CachedSessionList,
    # Outside routing, so every request is capped and logged, matched or not (refusals too).
    ConnectionCap,
    HeaderLimits,
    RequestLog,
    # A write's cached reads are invalidated after it commits, before the client sees the answer.
    WriteBarrier,
    # Outside the refusal layers, so capped and unmatched requests are counted as well.
    RequestMetrics,
    # Every answer, refusals and errors included, carries the security headers.
    SecurityHeaders,
    # Outermost: an answer given before the body was read (any refusal above) closes the
    # connection and says so, or the client's next request on it would be lost.
    CloseOnUnreadBody,
)


def api_router() -> Router:
    """``/api/v1``: every API route, each request counted against its caller's allowance."""
    return Router(
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


class CorePlugin(InitPluginProtocol):
    """Routes, dependencies, lifespans, error handling, OpenAPI and the outer layers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resources = build_resources(settings)
        self.jwt_auth = create_jwt_auth(settings)

    def plugins(self) -> list[PluginProtocol]:
        """This plugin first (its lifespans start before the database plugin's), then the
        database and problem-details plugins."""
        return [self, SQLAlchemyPlugin(config=self.resources.alchemy), problem_details_plugin()]

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        settings = self.settings
        app_config.route_handlers.extend(
            [HealthController, metrics, api_router(), WebClient().router()]
        )
        app_config.dependencies.update(providers(self.resources))
        # Each batch of a handler's dependencies in turn, not in a task group (see the module).
        resolve_dependencies_in_sequence()
        app_config.lifespan.extend(LIFESPANS)
        app_config.state[STATE_KEY] = self.resources
        app_config.on_startup.append(complete_document)
        app_config.exception_handlers.update(EXCEPTION_HANDLERS)  # type: ignore[arg-type]
        app_config.request_class = GuardedRequest
        # JSON above 1 KB: brotli when the client accepts it, else gzip, else as is. Only HTTP
        # responses are compressed (the WebSocket has its own permessage-deflate, if any), and
        # not answers compressed already (API docs assets, export archives: compression.py).
        app_config.compression_config = CompressionConfig(
            backend="brotli",
            brotli_gzip_fallback=True,
            minimum_size=1024,
            exclude_opt_key=SKIP_COMPRESSION,
        )
        if settings.server.cors_allow_origins:
            app_config.cors_config = CORSConfig(allow_origins=settings.server.cors_allow_origins)
        app_config.openapi_config = OpenAPIConfig(
            title="Wingman",
            version=__version__,
            description="REST API of the Wingman conversation assistant.",
            path="/api/docs",
            render_plugins=[
                ApiDocsPlugin(asyncapi=partial(asyncapi_document, version=__version__))
            ],
        )
        app_config.debug = False
        # After the OpenAPI config is set: the JWT auth adds its security scheme to it.
        return self.jwt_auth.on_app_init(app_config)

    def outer_layers(self, app: Litestar) -> ASGIApp:
        """Litestar's handler wrapped in :data:`OUTER_LAYERS`, innermost first."""
        server = self.settings.server
        addresses = self.resources.client_addresses
        handler: ASGIApp = CachedSessionList(app.asgi_handler, app, self.jwt_auth)
        handler = ConnectionCap(handler, addresses, server.max_connections_per_ip)
        handler = HeaderLimits(handler, server.max_header_bytes, server.max_header_line_bytes)
        handler = RequestLog(handler, addresses)
        handler = WriteBarrier(handler)
        handler = RequestMetrics(handler)
        handler = SecurityHeaders(handler, token_paths=(f"{API_PREFIX}/auth/",))
        return CloseOnUnreadBody(handler)
