"""The application factory: ``create_app(settings) -> Litestar``.

Building the app opens no connection; Redis clients and the database engine open in lifespans.
Granian calls :func:`create_app` with no argument in each worker process (``factory=True``), which
loads the settings from files and environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from wingman import __version__
from wingman.config import Settings, load_settings
from wingman.db.migrations import head_revision
from wingman.domain.health.controllers import HealthController
from wingman.server.database import alchemy_config
from wingman.server.errors import EXCEPTION_HANDLERS, problem_details_plugin
from wingman.server.logging import configure_logging
from wingman.server.redis import RedisClients

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings, process="web")

    @asynccontextmanager
    async def redis_lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.redis = RedisClients.from_settings(settings.redis, process="web")
        try:
            yield
        finally:
            await app.state.redis.close()

    api = Router(path=API_PREFIX, route_handlers=[])

    return Litestar(
        route_handlers=[HealthController, api],
        plugins=[
            SQLAlchemyPlugin(config=alchemy_config(settings.database)),
            problem_details_plugin(),
        ],
        lifespan=[redis_lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        state=State({"settings": settings, "migration_head": head_revision()}),
        cors_config=(
            CORSConfig(allow_origins=settings.server.cors_allow_origins)
            if settings.server.cors_allow_origins
            else None
        ),
        openapi_config=OpenAPIConfig(
            title="Wingman",
            version=__version__,
            description="REST API of the Wingman conversation assistant.",
            path="/api/docs",
            render_plugins=[ScalarRenderPlugin()],
        ),
        # structlog owns logging (configured above); Litestar's own config would replace it.
        logging_config=None,
        debug=False,
    )
