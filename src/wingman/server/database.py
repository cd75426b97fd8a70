"""The SQLAlchemy engine and session configuration (advanced-alchemy, psycopg 3), and how to tell
a database that cannot be reached from one that refused a statement."""

from __future__ import annotations

import psycopg
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from wingman.config import DatabaseSettings

SESSION_DEPENDENCY_KEY = "db_session"


def engine_config(db: DatabaseSettings, application_name: str) -> EngineConfig:
    return EngineConfig(
        # Every connection the process may open (pool_size + max_overflow, as the tuning plan
        # budgets them against max_connections) stays open once opened: SQLAlchemy closes an
        # overflow connection at check-in whenever pool_size others are idle, and a web worker's
        # load swings across that line many times a second. Each new connection is a backend
        # fork and a SCRAM exchange on both sides: an uncached message page cost 5 ms of worker
        # CPU with one new connection per ~14 requests, against about a third of that without.
        # Connections are still opened only when needed and retired after pool_recycle.
        pool_size=db.pool_size + db.max_overflow,
        max_overflow=0,
        pool_timeout=db.pool_timeout,
        pool_recycle=db.pool_recycle,
        # A connection killed by a PostgreSQL restart is noticed and replaced before use, so the
        # pool recovers without restarting the process.
        pool_pre_ping=True,
        echo=db.echo,
        connect_args={
            "connect_timeout": max(1, int(db.connect_timeout)),
            "application_name": application_name,
            "options": f"-c statement_timeout={db.statement_timeout_ms}",
        },
    )


def alchemy_config(
    db: DatabaseSettings, application_name: str = "wingman-web"
) -> SQLAlchemyAsyncConfig:
    """Config for advanced-alchemy's Litestar plugin: one session per request, commit on 2xx."""
    return SQLAlchemyAsyncConfig(
        connection_string=db.url,
        engine_config=engine_config(db, application_name),
        session_config=AsyncSessionConfig(expire_on_commit=False),
        session_dependency_key=SESSION_DEPENDENCY_KEY,
        before_send_handler="autocommit",
        create_all=False,
    )


def create_engine(db: DatabaseSettings, application_name: str) -> AsyncEngine:
    """An engine for workers and the CLI, configured exactly like the web's."""
    return alchemy_config(db, application_name).get_engine()


def session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


# SQLSTATEs that mean "this server is not serving you right now": the connection exception class
# (08), and a server shutting down, crashed or still starting (57P01-57P03). Other operational
# errors (a statement timeout, a statement too complex) are about the statement, not the server.
_SHUTDOWN_STATES = frozenset({"57P01", "57P02", "57P03"})


def database_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says PostgreSQL cannot be reached: down, restarting, or the connection
    was lost. SQLAlchemy marks a lost connection ``connection_invalidated`` (and drops it from the
    pool); a refused new connection is a psycopg ``OperationalError`` without a SQLSTATE."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig or exc
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SHUTDOWN_STATES
