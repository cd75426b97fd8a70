"""The SQLAlchemy engine and session configuration (advanced-alchemy, psycopg 3)."""

from __future__ import annotations

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
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
