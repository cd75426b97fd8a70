"""Hot statements that SQLAlchemy builds and compiles once and psycopg runs.

The statements on the load profile's path (a message page, the session list and detail, a post,
a feedback event, and the AI worker's claim, prompt reads and store) are Core statements of
table columns, built once with bound parameters. Even so, ``Session.execute`` spends about
three times psycopg's own client CPU on each of them (its cache key walk over the statement,
the ORM's execution options and events, the result's metadata and row objects): about 250 µs a
statement against 85 µs for psycopg alone, measured in docs/performance.md. A
:class:`DirectStatement` keeps SQLAlchemy for what it is good at (building the SQL, the
connection, its transaction and the pool) and sends the compiled SQL on the driver connection
the session or connection already holds:

- **Same values in and out.** The parameters go through the bind processors of their types and
  the rows through the result processors of the columns (enum members, UTC datetimes, JSON), as
  SQLAlchemy itself would apply them. A row is a named tuple of the statement's columns, in
  order: unpacked into a response struct, or read by column name as a SQLAlchemy row is.
- **Same transaction.** The statement runs in the transaction of the session or connection,
  begun first if it was not (SQLAlchemy's autobegin), so what it writes commits or rolls back
  with the rest; a pooler's ``SET LOCAL statement_timeout`` still runs first (the engine's
  ``begin`` event). On the autocommit engine each statement commits by itself, as before.
- **Same errors.** A driver error is raised as SQLAlchemy raises it (the ``DBAPIError``
  subclass of its kind, the driver's error as ``orig``), and a connection the server dropped is
  invalidated, so the error handlers, the pool and ``database_unreachable`` see no difference.
  Parameters are never put in the message (they are users' text).
- **Same events.** Listeners of the engine's ``before_cursor_execute`` are called with the SQL,
  so statement counters still see every statement, and ``database.echo`` logs it (without its
  values).

A statement compiles for the first dialect it meets and again only if another one comes (a
process has one engine; tests make several).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.types import TypeEngine

from wingman.db.models import EnumString

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    dialect: Dialect
    sql: str
    # Values the statement carries itself (constants SQLAlchemy made parameters of).
    defaults: Mapping[str, Any]
    binds: tuple[tuple[str, Processor], ...]
    # The driver's row to the statement's: each column through its result processor.
    row: Callable[[Sequence[Any]], tuple[Any, ...]]


class DirectStatement:
    """A Core statement run on the driver connection (see the module)."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled
        if compiled is None or compiled.dialect is not dialect:
            compiled = self._compiled = _compile(self.statement, dialect)
        return compiled

    def sql(self, dialect: Dialect) -> str:
        """The SQL the driver is sent (with ``%(name)s`` placeholders)."""
        return self._for(dialect).sql

    async def rows(
        self, db: AsyncSession | AsyncConnection, params: Mapping[str, Any]
    ) -> list[Any]:
        """Run the statement with ``params`` on ``db``'s connection; its rows, processed."""
        if isinstance(db, AsyncSession):
            connection = await db.connection()  # begins the session's transaction
        else:
            connection = db
            if not connection.in_transaction():
                # SQLAlchemy's autobegin, as its own execution would: otherwise its commit()
                # would see no transaction and do nothing, and a write would be rolled back
                # when the connection goes back to the pool.
                await connection.begin()
        compiled = self._for(connection.dialect)
        values = {**compiled.defaults, **params}
        for name, process in compiled.binds:
            values[name] = process(values[name])
        sync = connection.sync_connection
        if sync is None or sync.invalidated:
            raw = await connection.get_raw_connection()  # raises as SQLAlchemy would
        else:
            # Checked out and valid: the property reads it without I/O (no greenlet hop).
            raw = sync.connection
        driver = cast("psycopg.AsyncConnection[Any]", raw.driver_connection)
        if sync is not None:
            for listener in sync.dispatch.before_cursor_execute:
                listener(sync, None, compiled.sql, values, None, False)
            if sync.engine.echo:
                # ``database.echo``: the SQL, as SQLAlchemy logs it (never the values).
                sync.engine.logger.info("%s", compiled.sql)
        try:
            cursor = driver.cursor()
            try:
                await cursor.execute(compiled.sql, values)
                fetched = await cursor.fetchall() if cursor.description is not None else []
            finally:
                await cursor.close()
        except psycopg.Error as exc:
            raise await _as_sqlalchemy_raises(connection, driver, compiled.sql, exc) from exc
        make = compiled.row
        return [make(row) for row in fetched]

    async def first(
        self, db: AsyncSession | AsyncConnection, params: Mapping[str, Any]
    ) -> Any | None:
        """The first row, or None when there is none."""
        rows = await self.rows(db, params)
        return rows[0] if rows else None


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    if not isinstance(statement, ClauseElement):  # pragma: no cover - a programming error
        raise TypeError(f"not a Core statement: {statement!r}")
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    sql = str(compiled)
    if "POSTCOMPILE" in sql or compiled.escaped_bind_names:
        # Expanding parameters (IN with a bound list) and escaped names are rendered per
        # execution by SQLAlchemy; such a statement is not one SQL string.
        raise ValueError("a direct statement needs fixed SQL: no IN lists, plain names")
    binds: list[tuple[str, Processor]] = []
    defaults: dict[str, Any] = {}
    for name, bind in compiled.binds.items():
        if bind.callable is not None:
            raise ValueError(f"parameter {name!r}: a direct statement takes no computed values")
        if not bind.required:
            defaults[name] = bind.effective_value
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds.append((name, process))
    columns = list(getattr(statement, "exported_columns", ()))
    processors = [_result_processor(column.type, dialect) for column in columns]
    return _Compiled(dialect, sql, defaults, tuple(binds), _row_maker(columns, processors))


def _result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    """The column type's result processor, as SQLAlchemy applies it; None where it gives back
    unchanged whatever psycopg returns for the column, and a table lookup for an enum string.

    Called for every value of every row, these were about half a page's row building: ``GUID``
    passes through the ``uuid.UUID`` psycopg returns for a PostgreSQL ``uuid``, ``DateTimeUTC``
    the aware datetime it returns for ``timestamptz``; an :class:`EnumString`'s member comes
    straight from its table of members, without the decorator's wrapper around it.
    """
    if isinstance(type_, GUID) and dialect.name == "postgresql":
        return None
    if isinstance(type_, DateTimeUTC) and getattr(type_.impl, "timezone", False):
        return None
    if isinstance(type_, EnumString):
        return type_.members.__getitem__
    return cast(Processor | None, type_.dialect_impl(dialect).result_processor(dialect, None))


def _row_maker(
    columns: Sequence[Any], processors: Sequence[Processor | None]
) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A function from the driver's row to a named tuple of the columns (read by index or by
    name; a name that comes twice is read by index only), each value through its column's
    processor.

    The function is generated for the statement, one expression per column, as SQLAlchemy
    generates its own row getters: a loop over the processors, building a list and then the
    tuple, cost about as much as the rest of the statement's client work for a page of 20
    rows. Only column positions and processors go into it, never a value.
    """
    names = [column.key for column in columns]
    # The fields are the statement's, known only here.
    row_type = namedtuple("Row", names, rename=True)  # type: ignore[misc]
    scope: dict[str, Any] = {"Row": row_type}
    values = []
    for index, process in enumerate(processors):
        if process is None:
            values.append(f"row[{index}]")
        else:
            scope[f"process_{index}"] = process
            values.append(f"process_{index}(row[{index}])")
    exec(f"def make(row):\n    return Row({', '.join(values)})\n", scope)  # noqa: S102
    return cast(Callable[[Sequence[Any]], tuple[Any, ...]], scope["make"])


async def _as_sqlalchemy_raises(
    connection: AsyncConnection, driver: psycopg.AsyncConnection[Any], sql: str, exc: psycopg.Error
) -> Exception:
    """``exc`` wrapped as SQLAlchemy wraps a driver error; a lost connection is invalidated."""
    dialect = connection.dialect
    lost = bool(dialect.is_disconnect(cast(Any, exc), cast(Any, driver), None))
    if lost and not connection.invalidated:
        await connection.invalidate(exc)
    return DBAPIError.instance(
        sql,
        None,
        exc,
        psycopg.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )
