"""Keyset pages over a (timestamp, id) order, with signed opaque cursors.

Every list in the API pages the same way: newest first by a timestamp, the row id breaking ties,
``limit + 1`` rows fetched to learn whether a next page exists, and the position of the last row
handed back as a cursor (see :mod:`wingman.server.cursors`). :func:`newest_first` does it for
ORM queries; the message page and the session list, prebuilt Core statements of the hot routes,
use the same two halves (:func:`cursor_position`, :func:`page_and_cursor`), so the lists cannot
drift apart and a bad cursor is always the same problem.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Select, and_, or_
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
) -> tuple[list[Row], str | None]:
    """One page of ``query`` ordered by ``at`` descending, then ``row_id`` ascending: entities
    for an entity query, rows for a query of columns (which must include ``at`` and
    ``row_id``). Returns the rows and the cursor of the next page, or None on the last one.
    """
    after = cursor_position(key, kind, cursor)
    if after is not None:
        query = query.where(or_(at < after.at, and_(at == after.at, row_id > after.id)))
    result = await session.execute(query.order_by(at.desc(), row_id).limit(limit + 1))
    # An entity query yields entities; a query of columns yields its rows (named tuples).
    rows: list[Any] = list(result.scalars() if len(query.column_descriptions) == 1 else result)
    return page_and_cursor(rows, limit, key=key, kind=kind, at=at.key, row_id=row_id.key)


def cursor_position(key: bytes, kind: str, cursor: str | None) -> Position | None:
    """Where the page after ``cursor`` starts (None for the first page); a cursor that is
    malformed or was not issued here for ``kind`` is a 400 problem."""
    if cursor is None:
        return None
    try:
        return decode_cursor(key, kind, cursor)
    except InvalidCursor:
        raise invalid_cursor() from None


def page_and_cursor(
    rows: list[Row], limit: int, *, key: bytes, kind: str, at: str, row_id: str
) -> tuple[list[Row], str | None]:
    """The page of ``rows`` (``limit + 1`` were fetched) and the cursor of the next one, made
    from the attributes ``at`` and ``row_id`` of the page's last row; None on the last page."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    position = Position(getattr(last, at), getattr(last, row_id))
    return rows[:limit], encode_cursor(key, kind, position)
