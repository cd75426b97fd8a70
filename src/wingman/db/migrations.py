"""Run and inspect the Alembic migrations from code: the CLI, the readiness probe and tests.

There is no ``alembic.ini``. :func:`alembic_config` builds the configuration in memory, pointing
at the migration scripts (:func:`script_location`) and handing the database URL to ``env.py``
through ``Config.attributes`` (an attribute, not an ini option, so a ``%`` in a password is not
mangled by ini interpolation).

New revisions can be written with the same configuration, for example::

    from alembic import command
    command.revision(alembic_config(url), message="add foo", autogenerate=True, rev_id="0002")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool
from sqlalchemy.ext.asyncio import AsyncConnection

from wingman.db.models import metadata
from wingman.resources import shipped_dir

__all__ = [
    "alembic_config",
    "current_revision",
    "head_revision",
    "pending_revisions",
    "schema_diff",
    "script_location",
    "upgrade_to_head",
]

# File names like 2026_11_23_0001_initial_schema.py; "%%" because ini options interpolate "%".
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s"


def script_location() -> Path:
    """The Alembic script directory holding ``env.py`` and ``versions/``.

    An installed wheel carries it as ``wingman/_migrations``; a source tree has it at
    ``<repo>/migrations``. Raises ``FileNotFoundError`` when neither exists.
    """
    return shipped_dir("migrations")


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url``, built without an ini file."""
    config = _config()
    config.attributes["database_url"] = database_url
    return config


def head_revision() -> str:
    """The revision the code expects the database to be at (read from the scripts, no database)."""
    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected exactly one migration head, found {heads!r}")
    return heads[0]


def upgrade_to_head(database_url: str) -> list[str]:
    """Apply every pending migration; a no-op when the database is already at head. Returns
    the revisions this call applied, oldest first.

    Concurrent processes (several nodes starting at once) are serialised by a transaction-level
    advisory lock taken in ``env.py`` before it reads the schema's version: the first applies,
    the others wait, then find nothing pending and return ``[]``. Synchronous: call it from a
    command line, not from inside a running event loop; and one call at a time per process,
    since Alembic keeps its migration context in module globals.
    """
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    return list(config.attributes.get("applied", []))


async def current_revision(connection: AsyncConnection) -> str | None:
    """The revision recorded in ``alembic_version``, or ``None`` when the table does not exist."""
    return await connection.run_sync(_current_revision)


def pending_revisions(database_url: str) -> list[str]:
    """Revisions between the database's current one and head, oldest first; empty at head."""
    with _connect(database_url) as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    script = ScriptDirectory.from_config(_config())
    pending = script.iterate_revisions("heads", current or "base")
    return [revision.revision for revision in reversed(list(pending))]


def schema_diff(database_url: str) -> list[Any]:
    """Alembic's differences between the models' metadata and the database; empty when in sync.

    Each entry is an autogenerate diff tuple such as ``("add_column", schema, table, column)``
    (or a list of them for column modifications).
    """
    with _connect(database_url) as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "target_metadata": metadata,
                # Keep in step with migrations/env.py.
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        diff: list[Any] = compare_metadata(context, metadata)
    return diff


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    config.set_main_option("file_template", FILE_TEMPLATE)
    return config


def _current_revision(connection: Connection) -> str | None:
    # get_current_revision() checks for the version table itself and returns None without it.
    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _connect(database_url: str) -> Iterator[Connection]:
    # NullPool: these are one-off connections; nothing should linger after the call.
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
