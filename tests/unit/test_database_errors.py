"""Which database errors mean "PostgreSQL cannot be reached" (503), not a failed statement."""

from __future__ import annotations

import psycopg
from psycopg import errors
from sqlalchemy.exc import DBAPIError, OperationalError

from wingman.server.database import database_unreachable


def wrapped(orig: Exception, *, invalidated: bool = False) -> DBAPIError:
    error = DBAPIError.instance("SELECT 1", None, orig, psycopg.Error)
    error.connection_invalidated = invalidated
    return error


def test_a_refused_or_lost_connection_is_unreachable() -> None:
    # psycopg raises these without a SQLSTATE: connection refused, server closed the connection.
    assert database_unreachable(psycopg.OperationalError("connection failed"))
    assert database_unreachable(wrapped(psycopg.OperationalError("consuming input failed")))
    assert isinstance(wrapped(psycopg.OperationalError("x")), OperationalError)


def test_a_server_shutting_down_or_starting_is_unreachable() -> None:
    for error in (errors.AdminShutdown(), errors.CrashShutdown(), errors.CannotConnectNow()):
        assert database_unreachable(wrapped(error)), type(error).__name__
    assert database_unreachable(wrapped(errors.ConnectionFailure()))


def test_a_connection_sqlalchemy_invalidated_is_unreachable() -> None:
    assert database_unreachable(wrapped(psycopg.DatabaseError("gone"), invalidated=True))


def test_errors_about_the_statement_are_not() -> None:
    for error in (
        errors.QueryCanceled(),  # statement_timeout
        errors.ProgramLimitExceeded(),
        errors.UniqueViolation(),
        errors.UntranslatableCharacter(),
    ):
        assert not database_unreachable(wrapped(error)), type(error).__name__
    assert not database_unreachable(ValueError("not a database error"))
