"""Keyset pages over a (timestamp, id) order, with signed opaque cursors.

Every list in the API pages the same way: newest first by a timestamp, the row id breaking ties,
``limit + 1`` rows fetched to learn whether a next page exists, and the position of the last row
handed back as a cursor (see :mod:`wingman.server.cursors`). One function does it so the
lists cannot drift apart, and a bad cursor is always the same problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Select, and_, or_, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from wingman.server.cursors import InvalidCursor, Position, decode_cursor, encode_cursor
from wingman.server.errors import Problem

Row = TypeVar("Row")


def invalid_cursor() -> Problem:
    return Problem(400, "invalid-cursor", "The cursor is malformed or was not issued here.")


async def newest_first(
    session: AsyncSession,
    query: Select[Row],
    at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[UUID],
    *,
    key: bytes,
    kind: str,
    cursor: str | None,
    limit: int,
    ids_descending: bool = False,
    params: Mapping[str, Any] | None = None,
) -> tuple[list[Row], str | None]:
    """One page of ``query`` (with its bound ``params``) ordered by ``at`` descending, then
    ``row_id``: entities for an entity query, rows for a query of columns (which must include
    ``at`` and ``row_id``).

    Ties on ``at`` are broken by ``row_id`` ascending, or descending with ``ids_descending``
    (message pages read one composite index backwards). Returns the rows and the cursor of the
    next page, or None on the last one.
    """
    if cursor is not None:
        try:
            after = decode_cursor(key, kind, cursor)
        except InvalidCursor:
            raise invalid_cursor() from None
        if ids_descending:
            query = query.where(tuple_(at, row_id) < tuple_(after.at, after.id))
        else:
            query = query.where(or_(at < after.at, and_(at == after.at, row_id > after.id)))
    tie_break: Any = row_id.desc() if ids_descending else row_id
    result = await session.execute(query.order_by(at.desc(), tie_break).limit(limit + 1), params)
    # An entity query yields entities; a query of columns yields its rows (named tuples).
    rows: list[Any] = list(result.scalars() if len(query.column_descriptions) == 1 else result)
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    position = Position(getattr(last, at.key), getattr(last, row_id.key))
    return rows[:limit], encode_cursor(key, kind, position)
