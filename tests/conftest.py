"""Session-wide real services: one private PostgreSQL cluster and two Redis servers.

Nothing is mocked: every test that needs a database or Redis talks to these over TCP. The schema
of the shared ``wingman`` database is built by running the migrations, as in production.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.services import PrivateServices
from wingman.config import Settings
from wingman.db.migrations import upgrade_to_head


@pytest.fixture(scope="session")
def services() -> Iterator[PrivateServices]:
    started = PrivateServices.start_session()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def settings(services: PrivateServices) -> Settings:
    """Settings for the shared, migrated ``wingman`` database and both Redis roles."""
    services.postgres.ensure_database("wingman")
    upgrade_to_head(services.postgres.url("wingman"))
    return services.settings("wingman")


@pytest.fixture
def empty_database_url(services: PrivateServices) -> Iterator[str]:
    """A freshly created, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    services.postgres.ensure_database(name)
    try:
        yield services.postgres.url(name)
    finally:
        services.postgres.drop_database(name)
