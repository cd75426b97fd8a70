"""The pool a process opens: database.pool_size as SQLAlchemy means it, and the deprecated
max_overflow of older tuning files folded into it, with a warning."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from wingman.config import DatabaseSettings
from wingman.server import database
from wingman.server.database import engine_config


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What the module logs during the test. Its logger may have been cached with the output
    of an earlier test; a fresh one, first used here, reaches ``capture_logs``."""
    with capture_logs() as captured:
        monkeypatch.setattr(database, "log", structlog.get_logger(database.__name__))
        yield captured


def test_pool_size_is_the_whole_fixed_pool(logs: list[dict[str, Any]]) -> None:
    config = engine_config(DatabaseSettings(pool_size=4), "wingman-tests")
    assert (config.pool_size, config.max_overflow) == (4, 0)
    assert logs == []


def test_deprecated_max_overflow_is_added_to_the_pool_and_warned_about(
    logs: list[dict[str, Any]],
) -> None:
    config = engine_config(DatabaseSettings(pool_size=2, max_overflow=3), "wingman-tests")
    assert (config.pool_size, config.max_overflow) == (5, 0)
    assert [(log["event"], log["log_level"], log["pool"]) for log in logs] == [
        ("database_max_overflow_deprecated", "warning", 5)
    ]
