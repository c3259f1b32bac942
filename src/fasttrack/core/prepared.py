"""Read queries compiled once per dialect and run on the pooled driver connection.

Every request authenticates with one query and most load one resource or one page
with another. Through the ORM each such statement cost about 0.4 ms of the event
loop's time (session, unit-of-work bookkeeping, statement cache lookup, execution
context, result and entity construction) against a few microseconds in the database.
A `PreparedQuery` is written with SQLAlchemy Core against the same tables, compiled
once for the dialect in use, and executed with a single call on a connection checked
out of the engine's own pool (so pre-ping, pool limits and invalidation are
SQLAlchemy's). Rows come back as dicts, which the read models validate.

Writes keep using the ORM session: its unit of work and version counters are where
the correctness of a write lives, and a write costs a transaction anyway.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import Column, ColumnCollection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import await_, greenlet_spawn
from sqlmodel import SQLModel

Processor = Callable[[Any], Any]
# A result row by column name; read models validate it.
Row = dict[str, Any]


class Fetch(Protocol):
    """Runs `sql` with positional `arguments` and returns the rows.

    Driver errors leave it as SQLAlchemy's exceptions (see `driver_error`), which the
    error handlers and the fault tests know, whichever path a statement took.
    """

    def __call__(
        self, sql: str, arguments: tuple[Any, ...]
    ) -> Awaitable[Sequence[Sequence[Any]]]: ...


class DriverFetch(Protocol):
    """Runs `sql` on a pooled connection; raises the DBAPI errors of SQLAlchemy's
    adapter for the driver."""

    def __call__(
        self, connection: PoolProxiedConnection, sql: str, arguments: tuple[Any, ...]
    ) -> Awaitable[Sequence[Sequence[Any]]]: ...


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """A statement as one dialect runs it: SQL text, parameter order, column decoders."""

    sql: str
    parameters: tuple[tuple[str, Processor | None], ...]
    constants: Mapping[str, Any]
    columns: tuple[tuple[str, Processor | None], ...]

    def arguments(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        arguments = []
        for name, process in self.parameters:
            value = values[name] if name in values else self.constants[name]
            arguments.append(value if process is None or value is None else process(value))
        return tuple(arguments)

    def row(self, raw: Sequence[Any]) -> Row:
        return {
            key: value if process is None or value is None else process(value)
            for (key, process), value in zip(self.columns, raw, strict=True)
        }


def compile_query(statement: Select[Any], dialect: Dialect) -> CompiledQuery:
    compiled = statement.compile(dialect=dialect)
    binds = compiled.binds
    parameters = tuple(
        (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in compiled.positiontup or ()
    )
    columns = tuple(
        (str(column.key), column.type.dialect_impl(dialect).result_processor(dialect, None))
        for column in statement.selected_columns
    )
    # Values written into the statement itself (a literal in a WHERE, SQLite's OFFSET
    # after a bound LIMIT) are bound too; they are the same on every call.
    constants = {name: value for name, value in compiled.params.items() if value is not None}
    return CompiledQuery(
        sql=compiled.string, parameters=parameters, constants=constants, columns=columns
    )


class PreparedQuery:
    """A SELECT with named bind parameters (`bindparam("task_id")`), compiled on first
    use for each dialect.

    Parameters are scalars (no expanding IN lists), so the SQL text never depends on
    the values and can be compiled once.
    """

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, CompiledQuery] = {}

    def for_dialect(self, dialect: Dialect) -> CompiledQuery:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = compile_query(self.statement, dialect)
        return compiled


class QueryRunner:
    """Runs prepared queries for one dialect through a `Fetch`."""

    def __init__(
        self,
        dialect: Dialect,
        fetch: Fetch,
        *,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._dialect = dialect
        self._fetch = fetch
        self._close = close

    async def all(self, query: PreparedQuery, **values: Any) -> list[Row]:
        compiled = query.for_dialect(self._dialect)
        rows = await self._fetch(compiled.sql, compiled.arguments(values))
        return [compiled.row(row) for row in rows]

    async def one_or_none(self, query: PreparedQuery, **values: Any) -> Row | None:
        rows = await self.all(query, **values)
        return rows[0] if rows else None

    async def close(self) -> None:
        if self._close is not None:
            await self._close()


class PooledFetch:
    """A `Fetch` that checks a connection out of an engine's pool for each statement."""

    def __init__(self, engine: AsyncEngine, fetch: DriverFetch) -> None:
        self._engine = engine.sync_engine
        self._dialect = engine.dialect
        self._fetch = fetch

    async def __call__(self, sql: str, arguments: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        return await greenlet_spawn(self._run, sql, arguments)

    def _run(self, sql: str, arguments: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        # Runs in a greenlet, like all of SQLAlchemy's async work: checkout (with its
        # pre-ping and overflow rules) and check-in are the pool's own, synchronous code.
        try:
            connection = self._engine.raw_connection()
        except Exception as error:
            raise driver_error(error, self._dialect, sql, arguments) from error
        try:
            return await_(self._fetch(connection, sql, arguments))
        except Exception as error:
            raise driver_error(error, self._dialect, sql, arguments, connection) from error
        finally:
            connection.close()


def driver_error(
    error: Exception,
    dialect: Dialect,
    sql: str,
    arguments: tuple[Any, ...],
    connection: PoolProxiedConnection | None = None,
) -> Exception:
    """`error` as SQLAlchemy reports it, invalidating the pooled `connection` it killed."""
    dbapi_error_type = dialect.loaded_dbapi.Error
    if not isinstance(error, dbapi_error_type):
        return error
    dbapi_connection = None if connection is None else connection.dbapi_connection
    lost = dialect.is_disconnect(error, dbapi_connection, None)
    if lost and connection is not None:
        connection.invalidate(error)
    return DBAPIError.instance(
        sql, arguments, error, dbapi_error_type, connection_invalidated=lost, dialect=dialect
    )


def columns_of(table: type[SQLModel], shape: type[BaseModel]) -> list[Column[Any]]:
    """The columns of `table` that the model `shape` has fields for, in table order."""
    columns: ColumnCollection[str, Column[Any]] = table.__table__.c  # type: ignore[attr-defined]
    return [column for column in columns if column.key in shape.model_fields]
