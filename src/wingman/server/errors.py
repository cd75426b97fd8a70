"""RFC 9457 problem details for every error the API returns.

Each problem carries a stable ``type`` (``urn:wingman:problem:<slug>``) that clients can switch
on; validation problems list the offending fields. Unexpected exceptions are logged with their
traceback and answered with a plain 500 that reveals nothing about the internals.

Database errors are answered by what the database said, whether or not a repository wrapped
them: no free pool connection is 503 ``server-busy``, an unreachable server 503 ``unavailable``
(both with Retry-After), a value PostgreSQL cannot store 422 ``unstorable-value``, a broken
constraint 409 ``conflict``. A Redis server that cannot be reached or does not answer in time
(stopped, or its master failing over to a replica) is 503 ``unavailable`` with Retry-After too:
a Sentinel failover takes seconds, and the client should come back, not report a bug.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from advanced_alchemy.exceptions import NotFoundError, RepositoryError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import IntegrityError as SQLAlchemyIntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from wingman.server.database import database_unreachable
from wingman.server.log_gate import WarningGate
from wingman.server.metrics import DB_POOL_TIMEOUTS

log = structlog.get_logger(__name__)

PROBLEM_TYPE_PREFIX = "urn:wingman:problem:"

# Status codes whose problem type is more specific than the status phrase.
_TYPE_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-failed",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


def problem_type(slug: str) -> str:
    return PROBLEM_TYPE_PREFIX + slug


class Problem(ProblemDetailsException):
    """Raise this from domain code: ``Problem(404, "session-not-found", "No such session.")``."""

    def __init__(
        self,
        status_code: int,
        slug: str,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            detail=detail,
            status_code=status_code,
            type_=problem_type(slug),
            title=HTTPStatus(status_code).phrase,
            extra=extra,
            headers=headers,
        )


def _from_http_exception(exc: HTTPException) -> ProblemDetailsException:
    status = exc.status_code
    slug = _TYPE_BY_STATUS.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "-")
    extra: dict[str, Any] | None = None
    detail = exc.detail
    if isinstance(exc, ValidationException) or status == 400:
        # Litestar's validation errors are a list of {message, key, source}; name the fields.
        errors = exc.extra if isinstance(exc.extra, list) else []
        if errors:
            slug = "validation-failed"
            extra = {"errors": errors}
    elif isinstance(exc.extra, dict):
        extra = exc.extra
    return ProblemDetailsException(
        detail=detail,
        status_code=status,
        type_=problem_type(slug),
        title=HTTPStatus(status).phrase,
        extra=extra,
        headers=exc.headers,
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled_error", path=request.url.path, method=request.method)
    return ProblemDetailsException(
        detail="Something went wrong on our side; it has been logged.",
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        type_=problem_type("internal-error"),
        title=HTTPStatus.INTERNAL_SERVER_ERROR.phrase,
    ).to_response(request)


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            exception_to_problem_detail_map={HTTPException: _from_http_exception},
        )
    )


def _unstorable(request: Request[Any, Any, Any], exc: DataError) -> Response[Any]:
    # PostgreSQL refuses some values that every schema check lets through (a NUL character in
    # text or in a JSON string). That is the client's input, not our failure: 422, and the
    # request's transaction is rolled back like any other error. The value itself is not logged.
    log.warning(
        "unstorable_value", path=request.url.path, error=type(getattr(exc, "orig", exc)).__name__
    )
    return Problem(
        422,
        "unstorable-value",
        "A value cannot be stored (for example, text containing a NUL character).",
    ).to_response(request)


_warnings = WarningGate()

# Seconds a client is told to wait when the server cannot serve right now (no free pool
# connection, or PostgreSQL down or restarting; a restart takes a few seconds).
RETRY_AFTER_SECONDS = "2"


def _busy(request: Request[Any, Any, Any], exc: PoolTimeout) -> Response[Any]:
    # No database connection came free within database.pool_timeout: the process is overloaded,
    # not broken. 503 with Retry-After tells clients and proxies to come back (a 500 would be
    # reported as a bug); the warning is written at most once per interval.
    DB_POOL_TIMEOUTS.inc()
    held = _warnings.open("pool")
    if held is not None:
        log.warning("database_pool_exhausted", path=request.url.path, suppressed=held)
    return Problem(
        503,
        "server-busy",
        "The server is too busy to answer right now; try again shortly.",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    ).to_response(request)


def _unreachable(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    # PostgreSQL is down, restarting, or dropped the connection mid-request. The request's
    # transaction did not commit (nothing half-done is kept), so the client may simply retry; the
    # pool replaces dead connections as it hands them out once the server is back. One warning
    # per interval, without a traceback: during an outage every request fails the same way.
    held = _warnings.open("database")
    if held is not None:
        log.warning(
            "database_unreachable",
            path=request.url.path,
            error=type(exc.orig or exc).__name__,
            suppressed=held,
        )
    return Problem(
        503,
        "unavailable",
        "The database cannot be reached right now; try again shortly.",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    ).to_response(request)


def _redis_unreachable(
    request: Request[Any, Any, Any], exc: RedisConnectionError | RedisTimeoutError
) -> Response[Any]:
    # Redis is down, or its master is being replaced (Sentinel): clients that follow the master
    # find the new one on their next connection. Nothing the handler committed is undone, and
    # every write the API takes is safe to repeat (idempotency keys), so the client retries.
    held = _warnings.open("redis")
    if held is not None:
        log.warning(
            "redis_unreachable",
            path=request.url.path,
            error=type(exc).__name__,
            suppressed=held,
        )
    return Problem(
        503,
        "unavailable",
        "A service the server needs cannot be reached right now; try again shortly.",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    ).to_response(request)


def _database(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    if database_unreachable(exc):
        return _unreachable(request, exc)
    return _unexpected(request, exc)


def _repository(request: Request[Any, Any, Any], exc: RepositoryError) -> Response[Any]:
    # advanced-alchemy's repositories wrap SQLAlchemy's errors, and its own mapping of them to
    # HTTP answers 409 for anything raised while executing a statement, a lost connection
    # included. What the database said decides here: the same answers as for the unwrapped
    # errors, and 409 only for a constraint the data broke.
    cause = exc.__cause__
    if isinstance(cause, PoolTimeout):
        return _busy(request, cause)
    if isinstance(cause, DataError):
        return _unstorable(request, cause)
    if isinstance(cause, DBAPIError) and database_unreachable(cause):
        return _unreachable(request, cause)
    if isinstance(exc, NotFoundError):
        return Problem(404, "not-found", "No such item.").to_response(request)
    if isinstance(cause, SQLAlchemyIntegrityError):
        # The database's message names the constraint and the values; the client gets neither.
        return Problem(
            409, "conflict", "The request conflicts with data that already exists."
        ).to_response(request)
    return _unexpected(request, exc)


EXCEPTION_HANDLERS = {
    Exception: _unexpected,
    DBAPIError: _database,
    DataError: _unstorable,
    PoolTimeout: _busy,
    RepositoryError: _repository,
    RedisConnectionError: _redis_unreachable,
    RedisTimeoutError: _redis_unreachable,
}
