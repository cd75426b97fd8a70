"""Alembic environment for Wingman.

Driven from :mod:`wingman.db.migrations` (there is no alembic.ini). The database comes from, in
order: an open SQLAlchemy ``Connection`` in ``config.attributes["connection"]``, a URL in
``config.attributes["database_url"]``, or the settings (``wingman.config.load_settings()``).
Migrations run synchronously through psycopg, in one transaction.
"""

from __future__ import annotations

from typing import Any, Literal

from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, create_engine, pool, text

from wingman.db.models import EnumString, metadata

# pg_advisory_xact_lock key ("wingman" in ASCII): concurrent upgrades queue up instead of racing.
MIGRATION_LOCK_KEY = 0x77696E676D616E

config = context.config


def database_url() -> str:
    """The URL handed over by the caller, else the one from the settings."""
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from wingman.config import load_settings  # noqa: PLC0415 - only needed without a URL

    return load_settings().database.effective_direct_url


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the models' custom types as plain SQLAlchemy types in generated revisions.

    Revisions then depend on neither advanced-alchemy's nor Wingman's Python types.
    """
    if type_ != "type":
        return False
    if isinstance(obj, DateTimeUTC):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, GUID):
        return "sa.Uuid()"
    if isinstance(obj, EnumString):
        return f"sa.String(length={obj.length})"
    return False


def configure(**options: Any) -> None:
    context.configure(
        target_metadata=metadata,
        # Keep in step with wingman.db.migrations.schema_diff.
        compare_type=True,
        compare_server_default=True,
        render_item=render_item,
        **options,
    )


def run_migrations_offline() -> None:
    """Write the SQL to stdout (``alembic upgrade --sql``) instead of running it."""
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    # What this run applied, for the caller (wingman.db.migrations.upgrade_to_head): a run
    # that waited on the lock below for another one finds nothing left and applies nothing.
    applied: list[str] = config.attributes.setdefault("applied", [])

    def record(*, step: Any, **_: Any) -> None:
        applied.extend(step.up_revision_ids)

    configure(connection=connection, on_version_apply=[record])
    with context.begin_transaction():
        # Taken before Alembic reads alembic_version, so a second process waits for the first
        # and then finds nothing left to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
