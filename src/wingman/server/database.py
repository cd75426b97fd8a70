"""The SQLAlchemy engine and session configuration (advanced-alchemy, psycopg 3), and how to tell
a database that cannot be reached from one that refused a statement."""

from __future__ import annotations

import functools
import select
from typing import Any

import psycopg
import structlog
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from sqlalchemy import Connection, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from wingman.config import DatabaseSettings

SESSION_DEPENDENCY_KEY = "db_session"

log = structlog.get_logger(__name__)


def engine_config(db: DatabaseSettings, application_name: str) -> EngineConfig:
    connect_args: dict[str, Any] = {
        "connect_timeout": max(1, int(db.connect_timeout)),
        # PgBouncer passes application_name through (it is one of the parameters it tracks).
        "application_name": application_name,
    }
    if db.pooler == "none":
        connect_args["options"] = f"-c statement_timeout={db.statement_timeout_ms}"
    else:
        # Behind PgBouncer in transaction mode a connection is a different server session from
        # one transaction to the next. psycopg prepares a statement on the server after its
        # fifth run, and that prepared statement would be missing (or someone else's) on the
        # next server connection: never prepare. PgBouncer refuses the ``options`` startup
        # parameter, so the statement timeout is set per transaction (see _on_begin).
        connect_args["prepare_threshold"] = None
    if db.max_overflow:
        # The pool never overflows: an older tuning file's max_overflow is added to pool_size.
        log.warning(
            "database_max_overflow_deprecated",
            pool_size=db.pool_size,
            max_overflow=db.max_overflow,
            pool=db.effective_pool_size,
            fix="set database.pool_size to the whole pool and drop max_overflow "
            "(wingmanctl tune --apply rewrites tuning.toml so)",
        )
    return EngineConfig(
        # One fixed pool: every connection the process may open (as the tuning plan budgets them
        # against max_connections) stays open once opened. SQLAlchemy closes an overflow
        # connection at check-in whenever pool_size others are idle, and a web worker's load
        # swings across that line many times a second. Each new connection is a backend fork and
        # a SCRAM exchange on both sides: an uncached message page cost 5 ms of worker CPU with
        # one new connection per ~14 requests, against about a third of that without.
        # Connections are still opened only when needed and retired after pool_recycle.
        pool_size=db.effective_pool_size,
        max_overflow=0,
        pool_timeout=db.pool_timeout,
        pool_recycle=db.pool_recycle,
        # No pre-ping: a connection killed by a PostgreSQL restart is noticed at checkout without
        # a round trip (_drop_closed_connection).
        pool_pre_ping=False,
        echo=db.echo,
        connect_args=connect_args,
    )


def alchemy_config(
    db: DatabaseSettings, application_name: str = "wingman-web"
) -> SQLAlchemyAsyncConfig:
    """Config for advanced-alchemy's Litestar plugin: one session per request, commit on 2xx."""
    return SQLAlchemyAsyncConfig(
        connection_string=db.url,
        create_engine_callable=functools.partial(_create_async_engine, db),
        engine_config=engine_config(db, application_name),
        # advanced-alchemy's cache listener runs after every commit, and asking whether it is
        # enabled built a new option engine each time (a logger lookup included): about 1 % of
        # the web's CPU under load. Wingman uses neither its cache nor its file objects.
        session_config=AsyncSessionConfig(
            expire_on_commit=False, info={"enable_cache_listener": False}
        ),
        enable_file_object_listener=False,
        session_dependency_key=SESSION_DEPENDENCY_KEY,
        before_send_handler="autocommit",
        create_all=False,
    )


def _create_async_engine(db: DatabaseSettings, url: str, **options: Any) -> AsyncEngine:
    engine = create_async_engine(url, **options)
    event.listen(engine.sync_engine.pool, "checkout", _drop_closed_connection)
    if db.pooler != "none":
        timeout = f"SET LOCAL statement_timeout = {int(db.statement_timeout_ms)}"

        def _on_begin(connection: Connection) -> None:
            # The first statement of every transaction, on whichever server connection PgBouncer
            # lends it: the same limit the startup packet sets without a pooler. A statement
            # that needs longer (an export's cursor) raises it with its own SET LOCAL after.
            connection.exec_driver_sql(timeout)

        event.listen(engine.sync_engine, "begin", _on_begin)
    return engine


def _drop_closed_connection(
    dbapi_connection: DBAPIConnection,
    record: ConnectionPoolEntry,
    proxy: PoolProxiedConnection,
) -> None:
    """Pool checkout: refuse a connection the server has closed, so the pool opens a new one.

    This replaces SQLAlchemy's pre-ping, which made a round trip (``SELECT 1``, with autocommit
    switched on and off around it) before every checkout: a quarter of the round trips of a
    one-row read, and a fifth of its client CPU. A pooled connection is idle between two
    checkouts, and the server says nothing on an idle connection unless it is going away
    (``LISTEN`` is never used on pooled connections): a restart, ``pg_terminate_backend``, a
    crash or a pooler going down all leave a termination message or end-of-file to read. So a
    socket with anything to read, or an error or hang-up, is dead. A server that vanishes
    without a word (a partition) is found by the first statement, exactly as the ping would
    have been stuck on it; that statement fails, and SQLAlchemy then invalidates the pool.
    """
    connection = dbapi_connection.driver_connection
    if connection.closed or _readable(connection.pgconn.socket):
        raise DisconnectionError("the server closed this pooled connection")


def _readable(fd: int) -> bool:
    """Whether ``fd`` has input, an error or a hang-up now (``poll``: ``select`` cannot take
    descriptors above 1023, and a web worker holds thousands of sockets)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def create_engine(db: DatabaseSettings, application_name: str) -> AsyncEngine:
    """An engine for workers and the CLI, configured exactly like the web's."""
    return alchemy_config(db, application_name).get_engine()


def autocommit_engine(engine: AsyncEngine, db: DatabaseSettings) -> AsyncEngine:
    """``engine`` for reads and for writes that are one statement: each statement commits by
    itself, without the ``BEGIN`` and ``COMMIT`` round trips around it (half the round trips of
    a one-row read, and about a quarter of its client CPU).

    Nothing is lost by it: a single statement is atomic on its own, and at PostgreSQL's default
    READ COMMITTED every statement of a transaction takes its own snapshot anyway, so a read of
    two statements sees no less in autocommit. Work that must commit several statements together
    keeps to a transaction (the request's ``db_session``, ``engine.begin()``).

    Behind a pooler the engine itself: the statement timeout is then set per transaction
    (``SET LOCAL``, see :func:`_create_async_engine`), and there would be no transaction for it.
    The view shares the engine's pool; its connections return to the pool with autocommit off.
    """
    if db.pooler != "none":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


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
