"""A bare Litestar app: the ceilings the micro benchmarks compare Wingman's routes with.

Served by ``wingmanctl serve --app wingman.loadtest.bare:create_app``, so Granian runs it with the
very settings (interface, loop, backlog, workers) that serve Wingman. No middleware, no auth, no
Redis: what a request costs before Wingman does anything.

- ``GET /bare``: one JSON route, no database.
- ``GET /bare/users/{id}``: one row read by primary key through an engine built exactly as
  Wingman builds its own (same pool settings, psycopg, the same settings file), with SQLAlchemy
  Core and the row encoded by msgspec: what the stack allows for a request that touches
  PostgreSQL, to compare Wingman's database routes with.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from sqlalchemy import bindparam, select

from wingman.config import load_settings
from wingman.db.models import User
from wingman.server.database import create_engine

# Built once, with a bound parameter, as Wingman's hot statements are.
_ONE_USER = select(User.id, User.email, User.display_name, User.tier, User.status).where(
    User.id == bindparam("user_id")
)


class BareUser(msgspec.Struct, frozen=True):
    id: uuid.UUID
    email: str | None
    display_name: str | None
    tier: str
    status: str


@get("/bare", sync_to_thread=False)
def bare() -> dict[str, Any]:
    return {"status": "ok", "items": [{"id": n, "title": f"Chat {n}"} for n in range(3)]}


@get("/bare/users/{user_id:uuid}")
async def one_row(user_id: uuid.UUID, state: State) -> BareUser:
    async with state.engine.connect() as conn:
        row = (await conn.execute(_ONE_USER, {"user_id": user_id})).one_or_none()
    if row is None:
        raise NotFoundException()
    return BareUser(row.id, row.email, row.display_name, str(row.tier), str(row.status))


@get("/health/ready", sync_to_thread=False)
def ready() -> dict[str, str]:
    return {"status": "ready"}


@asynccontextmanager
async def _database(app: Litestar) -> AsyncIterator[None]:
    engine = create_engine(load_settings().database, "wingman-bare")
    app.state.engine = engine
    try:
        yield
    finally:
        await engine.dispose()


def create_app() -> Litestar:
    return Litestar(
        route_handlers=[bare, one_row, ready],
        lifespan=[_database],
        openapi_config=None,
        logging_config=None,
    )
