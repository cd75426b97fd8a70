"""The OpenAPI document, completed where Litestar's generator cannot know our conventions.

Litestar documents each handler's success response and its own 400, as ``application/json``.
Wingman answers every error as RFC 9457 ``application/problem+json`` and its request Structs
refuse unknown fields, so the generated document is finished here, once, at start-up:

- every 4xx/5xx response is ``application/problem+json`` with the :data:`PROBLEM_SCHEMA`;
- the errors any operation of a kind can return are listed (401/403 behind auth, 404 with a path
  parameter, 409/422 with a request body, 429 everywhere under the API);
- request and response Structs that forbid unknown fields say ``additionalProperties: false``.

Schemathesis checks the result against the running server (tests/e2e/test_api_fuzz.py).
"""

from __future__ import annotations

from http import HTTPStatus

import msgspec
from litestar import Litestar
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)

from wingman.server.errors import PROBLEM_TYPE_PREFIX

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["status", "type", "title"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description=f"`{PROBLEM_TYPE_PREFIX}<slug>`"),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            description="validation problems, each naming the offending field in `key`",
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["message"],
                properties={
                    "message": Schema(type=OpenAPIType.STRING),
                    "key": Schema(type=OpenAPIType.STRING, description="the field, e.g. `content`"),
                    "source": Schema(
                        type=OpenAPIType.STRING,
                        enum=["body", "query", "path", "header", "cookie", "dependency"],
                        description="where the field was read from",
                    ),
                },
            ),
        ),
    },
)
_METHODS = ("get", "put", "post", "delete", "patch")
_BODY_METHODS = {"post", "put", "patch"}


def _problem_response(status: int) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=HTTPStatus(status).phrase,
        content={
            PROBLEM_MEDIA_TYPE: OpenAPIMediaType(
                schema=Reference(ref="#/components/schemas/Problem")
            )
        },
    )


def _expected_errors(path: str, method: str) -> set[int]:
    """The error statuses an operation of this shape can answer with."""
    if not path.startswith("/api/v1/"):
        return set()
    # 401 also under the public auth routes: a bad refresh token is refused with it.
    errors = {401, 429}
    if path.startswith("/api/v1/admin/"):
        errors.add(403)
    if "{" in path:
        errors.add(404)
    if method in _BODY_METHODS:
        # A body may name a row that is not there (a tone, a code request): 404 too.
        errors |= {400, 404, 409, 422}
    return errors


def _strict_structs() -> set[str]:
    """Names of Wingman's Structs that refuse unknown fields."""
    found: set[str] = set()
    pending = list(msgspec.Struct.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("wingman.") and cls.__struct_config__.forbid_unknown_fields:
            found.add(cls.__name__)
    return found


def complete_document(app: Litestar) -> None:
    """Finish the OpenAPI document in place; run once at start-up, before it is first served."""
    document = app.openapi_schema
    schemas = document.components.schemas
    schemas["Problem"] = PROBLEM_SCHEMA
    strict = _strict_structs()
    for name, schema in schemas.items():
        if name in strict and isinstance(schema, Schema):
            schema.additional_properties = False
    for path, item in (document.paths or {}).items():
        for method in _METHODS:
            operation = getattr(item, method)
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            for code in list(responses):
                if code.isdigit() and int(code) >= 400:
                    responses[code] = _problem_response(int(code))
            for status in sorted(_expected_errors(path, method)):
                responses.setdefault(str(status), _problem_response(status))
            operation.responses = responses
