"""What one web process holds for its lifetime, in one typed object.

:class:`~wingman.app.core.CorePlugin` builds it with the app (objects that open nothing) and
its lifespans fill in the rest (Redis clients, queues, the event bus, ...). Handlers never see
it: they receive each piece as a typed dependency. It sits in ``app.state`` under a single key
only for code that runs outside a handler and has nothing but the app or the ASGI scope (the
auth middleware, the layers around the router) and for tests, through :func:`app_resources`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from wingman.server.database import autocommit_engine

if TYPE_CHECKING:
    from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
    from litestar import Litestar
    from litestar.types import Scope
    from sqlalchemy.ext.asyncio import AsyncEngine

    from wingman.config import Settings
    from wingman.domain.catalog.cache import CatalogCache
    from wingman.domain.chat.replies import ReplyDispatch
    from wingman.domain.realtime.dispatcher import Dispatcher
    from wingman.domain.realtime.events import EventBus
    from wingman.queues import Queues
    from wingman.server.auth import UserStatusCache
    from wingman.server.cache import ReadCache
    from wingman.server.client_ip import ClientAddresses
    from wingman.server.cluster import Draining
    from wingman.server.last_seen import LastSeenTracker
    from wingman.server.ratelimit import RateLimiter
    from wingman.server.redis import RedisClients

# The one app.state key this process uses (the database plugin keeps its own keys).
STATE_KEY = "wingman"


@dataclass(eq=False)
class Resources:
    """The process's long-lived objects. The fields below the line exist once the lifespan
    that opens them has run (:data:`wingman.app.core.LIFESPANS`); reading one earlier raises
    ``AttributeError``, as it would for a missing state entry."""

    settings: Settings
    # The revision the code expects; /health/ready compares the database's with it.
    migration_head: str
    # The database plugin's config: its engine for code outside a request's session.
    alchemy: SQLAlchemyAsyncConfig
    client_addresses: ClientAddresses
    # Set on the stop signal: /health/ready answers 503 while the process drains.
    draining: Draining
    user_status: UserStatusCache
    last_seen: LastSeenTracker
    catalog: CatalogCache
    # ---- opened by the lifespans
    redis: RedisClients = field(init=False)
    events: EventBus = field(init=False)
    queues: Queues = field(init=False)
    rate_limiter: RateLimiter = field(init=False)
    reply_dispatch: ReplyDispatch = field(init=False)
    realtime: Dispatcher = field(init=False)
    read_cache: ReadCache = field(init=False)

    @cached_property
    def autocommit_engine(self) -> AsyncEngine:
        """The database plugin's engine for reads and one-statement writes
        (:func:`~wingman.server.database.autocommit_engine`)."""
        return autocommit_engine(self.alchemy.get_engine(), self.settings.database)

    def __deepcopy__(self, memo: dict[int, Any]) -> Resources:
        # Litestar copies state in places; the process has one set of resources, never a copy.
        return self

    def __copy__(self) -> Resources:
        return self


def app_resources(app: Litestar) -> Resources:
    """The resources of a Wingman app (for middleware, ASGI layers and tests; handlers get
    typed dependencies instead)."""
    resources: Resources = app.state[STATE_KEY]
    return resources


def scope_resources(scope: Scope) -> Resources:
    """The resources of the app serving this ASGI scope."""
    return app_resources(scope["litestar_app"])
