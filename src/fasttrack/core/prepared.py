"""Statements compiled once per dialect and run on the driver connection.

Every request authenticates with one query and most load one resource or one page
with another. Through the ORM each such statement cost about 0.4 ms of the event
loop's time (session, unit-of-work bookkeeping, statement cache lookup, execution
context, result and entity construction) against a few microseconds in the database,
and an INSERT through the session's unit of work about twice what it costs as a
prepared statement in the same session.
A `PreparedQuery` is written with SQLAlchemy Core against the same tables, compiled
once for the dialect in use, and executed with a single call on the driver
connection; rows come back as dicts, which the read models validate. Connections
come from the engine's own pool (pre-ping, limits and invalidation stay
SQLAlchemy's), except SQLite's reads, which share a few connections (core.sqlite).

Reads and inserts use them. Updates that apply rules to the current row (a PATCH with
If-Match, a status transition) keep the ORM session and its version counter.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import Column, ColumnCollection, ColumnElement, ReturnsRows, Table
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import greenlet_spawn
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

Processor = Callable[[Any], Any]
# A SELECT, or an INSERT/UPDATE/DELETE ... RETURNING.
Statement = ReturnsRows
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


class Driver(Protocol):
    """Prepared statements on a pooled connection of one driver.

    Errors are the DBAPI errors of SQLAlchemy's adapter for the driver.
    """

    async def fetch(
        self, connection: PoolProxiedConnection, sql: str, arguments: tuple[Any, ...]
    ) -> Sequence[Sequence[Any]]: ...

    async def join_transaction(self, connection: PoolProxiedConnection) -> None:
        """Make sure the transaction SQLAlchemy began on `connection` is open on the
        driver, so statements sent past SQLAlchemy belong to it."""


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


def compile_query(statement: Statement, dialect: Dialect) -> CompiledQuery:
    compiled = statement.compile(dialect=dialect)
    binds = compiled.binds
    parameters = tuple(
        (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in compiled.positiontup or ()
    )
    columns = tuple(
        (str(column.key), column.type.dialect_impl(dialect).result_processor(dialect, None))
        for column in statement.exported_columns
    )
    # Values written into the statement itself (a literal in a WHERE, SQLite's OFFSET
    # after a bound LIMIT) are bound too; they are the same on every call.
    constants = {name: value for name, value in compiled.params.items() if value is not None}
    return CompiledQuery(
        sql=compiled.string, parameters=parameters, constants=constants, columns=columns
    )


class PreparedQuery:
    """A statement with named bind parameters (`bindparam("task_id")`), compiled on
    first use for each dialect: a SELECT, or an INSERT whose RETURNING gives the row.

    Parameters are scalars (no expanding IN lists), so the SQL text never depends on
    the values and can be compiled once.
    """

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._compiled: dict[str, CompiledQuery] = {}

    def for_dialect(self, dialect: Dialect) -> CompiledQuery:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = compile_query(self.statement, dialect)
        return compiled


class PreparedInsert:
    """An INSERT of one row of a table model, RETURNING the given columns.

    Every column but an autoincrement primary key is a parameter; those the caller
    leaves out get the table model's default, so defaults (`utcnow`, `version=1`) are
    declared once, on the model.
    """

    __slots__ = ("_fields", "query")

    def __init__(
        self, model: type[SQLModel], *, returning: Sequence[ColumnElement[Any] | Mapped[Any]]
    ) -> None:
        table: Table = model.__table__  # type: ignore[attr-defined]
        columns = [column for column in table.c if column is not table.autoincrement_column]
        self._fields = {column.key: model.model_fields[column.key] for column in columns}
        statement = sa.insert(table).values(
            {column.key: sa.bindparam(column.key, type_=column.type) for column in columns}
        )
        self.query = PreparedQuery(statement.returning(*returning))

    async def one(self, runner: "QueryRunner", **values: Any) -> Row:
        row = {
            name: values[name] if name in values else field.get_default(call_default_factory=True)
            for name, field in self._fields.items()
        }
        return await runner.one(self.query, **row)


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

    async def one(self, query: PreparedQuery, **values: Any) -> Row:
        (row,) = await self.all(query, **values)
        return row

    async def close(self) -> None:
        if self._close is not None:
            await self._close()


class PooledFetch:
    """A `Fetch` that checks a connection out of an engine's pool for each statement."""

    def __init__(self, engine: AsyncEngine, driver: Driver) -> None:
        self._engine = engine.sync_engine
        self._dialect = engine.dialect
        self._driver = driver

    async def __call__(self, sql: str, arguments: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        connection = await checkout(self._engine)
        try:
            return await self._driver.fetch(connection, sql, arguments)
        except Exception as error:
            raise driver_error(error, self._dialect, sql, arguments, connection) from error
        finally:
            await checkin(connection)


async def in_session(session: AsyncSession, driver: Driver) -> QueryRunner:
    """Prepared statements in `session`'s transaction, on the connection it holds.

    They see what the session flushed, and commit or roll back with it.
    """
    connection = await session.connection()
    pooled = await connection.get_raw_connection()
    dialect = connection.dialect
    await driver.join_transaction(pooled)

    async def fetch(sql: str, arguments: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        try:
            return await driver.fetch(pooled, sql, arguments)
        except Exception as error:
            reported = driver_error(error, dialect, sql, arguments)
            if isinstance(reported, DBAPIError) and reported.connection_invalidated:
                # Through the session's connection, so that SQLAlchemy knows it is gone.
                await connection.invalidate(error)
            raise reported from error

    return QueryRunner(dialect, fetch)


async def checkout(engine: Engine) -> PoolProxiedConnection:
    """A connection from `engine`'s pool; failures to connect as SQLAlchemy reports them."""
    try:
        # The pool's checkout (pre-ping, overflow, waiting) is SQLAlchemy's synchronous
        # code for asyncio, which runs in a greenlet.
        return await greenlet_spawn(engine.raw_connection)
    except Exception as error:
        raise driver_error(error, engine.dialect, "", ()) from error


async def checkin(connection: PoolProxiedConnection) -> None:
    await greenlet_spawn(connection.close)


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
