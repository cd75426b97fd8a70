"""The migrations build the schema the models describe, and that schema enforces its rules.

Each test gets its own empty database (``empty_database_url``), so upgrades and downgrades
cannot disturb the shared test database. Rows are inserted with plain SQL so that the database's
own constraints, not the models' Python-side validation, are what rejects bad data.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from uuid import UUID

import psycopg.errors
import pytest
from alembic import command
from sqlalchemy import Connection, Engine, create_engine, inspect, pool, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine
from uuid_utils.compat import uuid7

from wingman.db.migrations import (
    alembic_config,
    current_revision,
    head_revision,
    pending_revisions,
    schema_diff,
    upgrade_to_head,
)
from wingman.db.models import metadata


@pytest.fixture
def migrated_url(empty_database_url: str) -> str:
    upgrade_to_head(empty_database_url)
    return empty_database_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = create_engine(migrated_url, poolclass=pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        yield connection


def table_names(database_url: str) -> set[str]:
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def violated_constraint(error: pytest.ExceptionInfo[IntegrityError]) -> str | None:
    original = error.value.orig
    assert isinstance(original, psycopg.errors.IntegrityError)
    return original.diag.constraint_name


def insert_user(conn: Connection, *, email: str | None = None) -> UUID:
    user_id = uuid7()
    conn.execute(
        text("INSERT INTO users (id, email) VALUES (:id, :email)"), {"id": user_id, "email": email}
    )
    return user_id


def insert_session(conn: Connection, user_id: UUID) -> UUID:
    session_id = uuid7()
    conn.execute(
        text("INSERT INTO chat_sessions (id, user_id) VALUES (:id, :user_id)"),
        {"id": session_id, "user_id": user_id},
    )
    return session_id


def insert_message(conn: Connection, session_id: UUID, idempotency_key: str | None) -> None:
    conn.execute(
        text(
            "INSERT INTO messages (id, session_id, sender, processing_status, idempotency_key)"
            " VALUES (:id, :session_id, 'user', 'done', :key)"
        ),
        {"id": uuid7(), "session_id": session_id, "key": idempotency_key},
    )


# --- Migrations -------------------------------------------------------------------------------


def test_pending_revisions_before_and_after_upgrade(empty_database_url: str) -> None:
    pending = pending_revisions(empty_database_url)
    assert pending
    assert pending[-1] == head_revision()

    upgrade_to_head(empty_database_url)

    assert pending_revisions(empty_database_url) == []


def test_upgrade_to_head_creates_every_table_and_is_idempotent(migrated_url: str) -> None:
    assert set(metadata.tables) | {"alembic_version"} == table_names(migrated_url)

    upgrade_to_head(migrated_url)

    assert pending_revisions(migrated_url) == []
    assert schema_diff(migrated_url) == []


def test_models_and_migrations_agree(migrated_url: str) -> None:
    assert schema_diff(migrated_url) == []


def test_downgrade_to_base_then_upgrade_again(migrated_url: str) -> None:
    command.downgrade(alembic_config(migrated_url), "base")

    assert table_names(migrated_url) == {"alembic_version"}
    assert pending_revisions(migrated_url)[-1] == head_revision()

    upgrade_to_head(migrated_url)

    assert pending_revisions(migrated_url) == []
    assert schema_diff(migrated_url) == []


def test_concurrent_upgrades_wait_for_each_other(empty_database_url: str) -> None:
    # Two processes starting at once (say, a migrate unit and a dev stack) must not race.
    # Processes, not threads: Alembic keeps its migration context in module globals.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as executor:
        runs = [executor.submit(upgrade_to_head, empty_database_url) for _ in range(2)]
        for run in runs:
            run.result(timeout=60)

    assert pending_revisions(empty_database_url) == []


@pytest.mark.asyncio
async def test_current_revision_is_none_on_empty_database_then_head(
    empty_database_url: str,
) -> None:
    engine = create_async_engine(empty_database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            assert await current_revision(connection) is None

        upgrade_to_head(empty_database_url)

        async with engine.connect() as connection:
            assert await current_revision(connection) == head_revision()
    finally:
        await engine.dispose()


# --- Constraints ------------------------------------------------------------------------------


def test_email_is_unique_regardless_of_case(conn: Connection) -> None:
    insert_user(conn, email="Someone@Example.org")
    # Accounts without an email (phone sign-in) do not collide with each other.
    insert_user(conn, email=None)
    insert_user(conn, email=None)

    with pytest.raises(IntegrityError) as error, conn.begin_nested():
        insert_user(conn, email="someone@example.ORG")

    assert violated_constraint(error) == "uq_users_email_lower"


def test_idempotency_key_is_unique_per_session(conn: Connection) -> None:
    user_id = insert_user(conn)
    session_id = insert_session(conn, user_id)
    other_session_id = insert_session(conn, user_id)
    insert_message(conn, session_id, "retry-1")
    # The same key in another session, and any number of messages without a key, are fine.
    insert_message(conn, other_session_id, "retry-1")
    insert_message(conn, session_id, None)
    insert_message(conn, session_id, None)

    with pytest.raises(IntegrityError) as error, conn.begin_nested():
        insert_message(conn, session_id, "retry-1")

    assert violated_constraint(error) == "uq_messages_session_id_idempotency_key"


def test_check_constraint_rejects_unknown_tier(conn: Connection) -> None:
    with pytest.raises(IntegrityError) as error, conn.begin_nested():
        conn.execute(
            text("INSERT INTO users (id, tier) VALUES (:id, 'gold')"),
            {"id": uuid7()},
        )

    assert violated_constraint(error) == "ck_users_tier"


def test_deleting_a_user_removes_their_rows(conn: Connection) -> None:
    user_id = insert_user(conn, email="gone@example.org")
    session_id = insert_session(conn, user_id)
    insert_message(conn, session_id, None)

    conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})

    assert conn.scalar(text("SELECT count(*) FROM chat_sessions")) == 0
    assert conn.scalar(text("SELECT count(*) FROM messages")) == 0
