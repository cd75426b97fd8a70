"""The request class of the app: a body that cannot be decoded is the client's error, never ours.

Litestar turns malformed JSON into a 400, but two other failures of the decoder escape it and
would be answered 500 with a traceback in the log, for a request that needs no sign-in:

- a body nested deeper than the interpreter's recursion limit (``[[[[…`` 100,000 levels deep):
  msgspec stops at the limit with a ``RecursionError``;
- text that is not UTF-8 (a ``\\xff`` byte inside a JSON string): ``UnicodeDecodeError``.

Below that limit a deep body decodes, but storing or answering it runs deeper in the stack and
fails there (the JSON encoder of a ``jsonb`` column stops at the same limit). So a body is also
refused when it nests deeper than :data:`MAX_DEPTH` levels, far more than any request needs.

All of these are answered 400 ``bad-request`` problems here, like any other malformed body.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from wingman.server.errors import Problem

# Arrays and objects inside each other, the body itself being level 1.
MAX_DEPTH = 64

_TOO_DEEP = f"The request body is nested too deeply (more than {MAX_DEPTH} levels)."


def nested_deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` (decoded JSON) holds arrays or objects more than ``limit`` deep.
    Walks with a stack of its own, so no depth can exhaust the interpreter's."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def _check_depth(body: bytes, value: Any) -> Any:
    # Cheap first: a body with few brackets cannot nest deeply, and most bodies are like that.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and nested_deeper_than(value, MAX_DEPTH):
        raise Problem(400, "bad-request", _TOO_DEEP)
    return value


def _undecodable(exc: RecursionError | UnicodeDecodeError) -> Problem:
    if isinstance(exc, RecursionError):
        return Problem(400, "bad-request", _TOO_DEEP)
    return Problem(400, "bad-request", "The request body is not valid UTF-8.")


class GuardedRequest(Request[Any, Any, Any]):
    """Litestar's request, with the JSON bodies above answered as 400 problems (the API takes
    no other structured body)."""

    async def json(self) -> Any:
        try:
            value = await super().json()
        except (RecursionError, UnicodeDecodeError) as exc:
            raise _undecodable(exc) from None
        return _check_depth(await self.body(), value)
