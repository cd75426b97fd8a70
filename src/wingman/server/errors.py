"""RFC 9457 problem details for every error the API returns.

Each problem carries a stable ``type`` (``urn:wingman:problem:<slug>``) that clients can switch
on; validation problems list the offending fields. Unexpected exceptions are logged with their
traceback and answered with a plain 500 that reveals nothing about the internals.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from advanced_alchemy.exceptions import RepositoryError
from advanced_alchemy.extensions.litestar.exception_handler import exception_to_http_response
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeout

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


_pool_warnings = WarningGate()


def _busy(request: Request[Any, Any, Any], exc: PoolTimeout) -> Response[Any]:
    # No database connection came free within database.pool_timeout: the process is overloaded,
    # not broken. 503 with Retry-After tells clients and proxies to come back (a 500 would be
    # reported as a bug); the warning is written at most once per interval.
    DB_POOL_TIMEOUTS.inc()
    held = _pool_warnings.open("pool")
    if held is not None:
        log.warning("database_pool_exhausted", path=request.url.path, suppressed=held)
    return Problem(
        503,
        "server-busy",
        "The server is too busy to answer right now; try again shortly.",
        headers={"Retry-After": "2"},
    ).to_response(request)


def _repository(request: Request[Any, Any, Any], exc: RepositoryError) -> Response[Any]:
    # advanced-alchemy's repositories wrap SQLAlchemy's errors, the pool timeout included.
    if isinstance(exc.__cause__, PoolTimeout):
        return _busy(request, exc.__cause__)
    return exception_to_http_response(request, exc)


EXCEPTION_HANDLERS = {
    Exception: _unexpected,
    DataError: _unstorable,
    PoolTimeout: _busy,
    RepositoryError: _repository,
}
