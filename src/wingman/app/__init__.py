"""The application factory: ``create_app(settings) -> Litestar``.

Building the app opens no connection; Redis clients and the database engine open in lifespans.
Granian calls :func:`serve_app` in each worker process (``factory=True``): the app of the
settings in files and environment, whose start-up heap is frozen once it has started
(:mod:`wingman.server.heap`). The wiring itself is
:class:`~wingman.app.core.CorePlugin` (map: ``docs/architecture.md``).
"""

from __future__ import annotations

from litestar import Litestar

from wingman.app.core import CorePlugin
from wingman.config import Settings, load_settings
from wingman.server.heap import freeze_startup_heap
from wingman.server.logging import configure_logging


def create_app(settings: Settings | None = None) -> Litestar:
    """The web app for ``settings`` (default: loaded from files and environment)."""
    settings = settings or load_settings()
    configure_logging(settings, process="web")
    core = CorePlugin(settings)
    app = Litestar(
        plugins=core.plugins(),
        # structlog owns logging (configured above); Litestar's own config would replace it.
        logging_config=None,
        # 413 above it (the appliance's proxy refuses the same size first). Given here, not in
        # the plugin: Litestar takes the body limit from its own argument, not from AppConfig.
        request_max_body_size=settings.server.max_body_bytes,
    )
    app.asgi_handler = core.outer_layers(app)
    return app


def serve_app(settings: Settings | None = None) -> Litestar:
    """The app as a served process runs it: :func:`create_app`, and once its lifespans have
    started, everything alive is frozen out of the garbage collector's scans."""
    app = create_app(settings)
    app.on_startup.append(freeze_startup_heap)
    return app
