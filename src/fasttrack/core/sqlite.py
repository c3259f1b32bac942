"""SQLite through aiosqlite: one trip to the connection's thread per statement.

aiosqlite runs each SQLite connection in its own thread and SQLAlchemy's generic async
adapter awaits the driver's cursor creation, execute, fetchall and close one by one:
four hand-offs between the event loop and that thread per statement, plus one for
every commit or rollback, even when no transaction is open. Under load each hand-off
also waits for the GIL held by the busy event loop, so these trips, not SQLite, were
what limited throughput (see README "Performance"). This adapter runs the whole
statement in one call on the driver thread, sends the `BEGIN` of a transaction along with
its first statement, and skips commit/rollback when SQLite has no transaction open.
Everything else is SQLAlchemy's own aiosqlite adapter.

The same one-trip call runs prepared statements (core.prepared): in a session's
transaction (`SQLiteDriver`), and for reads on connections of their own
(`ReadConnections`).
"""

import asyncio
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import await_

from fasttrack.core.prepared import driver_error

_Result = tuple[Any, int, int | None, list[Any]]
BUSY_TIMEOUT: Final = "PRAGMA busy_timeout=5000"
PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    BUSY_TIMEOUT,
)
READ_PRAGMAS: Final = (BUSY_TIMEOUT, "PRAGMA query_only=ON")
# Writers take the write lock when they begin: a transaction that reads before it
# writes can never fail on a snapshot another writer made stale.
BEGIN_WRITE: Final = "BEGIN IMMEDIATE"


def _run(
    connection: sqlite3.Connection,
    operation: str,
    parameters: Any,
    *,
    many: bool,
    begin: str | None,
) -> _Result:
    """Execute, fetch and close on the driver's thread; returns what the cursor learnt.

    `begin` is the statement that opens the transaction this statement is the first of:
    it travels with it instead of taking a trip of its own.
    """
    cursor = connection.cursor()
    try:
        if begin is not None:
            cursor.execute(begin)
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        # No driver cursor is created here: _run makes (and closes) one per statement.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._rows: deque[Any] = deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    def execute(self, operation: Any, parameters: Any = None) -> None:
        self._call(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> None:
        self._call(operation, seq_of_parameters, many=True)

    def _call(self, operation: Any, parameters: Any, *, many: bool) -> None:
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        submit: Callable[..., Awaitable[_Result]] = driver._execute
        adapt_connection: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        begin = adapt_connection.take_pending_begin()
        try:
            result = await_(
                submit(_run, driver._conn, operation, parameters, many=many, begin=begin)
            )
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._description, self._rowcount, self._lastrowid, rows = result
        self._rows = deque(rows)

    async def _async_soft_close(self) -> None:
        return None

    def close(self) -> None:
        self._rows.clear()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_pending_begin",)
    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._pending_begin: str | None = None

    def begin_with_next_statement(self, statement: str) -> None:
        """Open the transaction with `statement` on the same trip as the next statement."""
        self._pending_begin = statement

    def take_pending_begin(self) -> str | None:
        statement, self._pending_begin = self._pending_begin, None
        return statement

    def _in_transaction(self) -> bool:
        # The driver connection is idle whenever SQLAlchemy calls commit or rollback, so
        # reading this flag from the event loop's thread is safe.
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        return driver._connection is not None and driver._conn.in_transaction

    def commit(self) -> None:
        # A transaction that ran no statement never began on the driver.
        self._pending_begin = None
        if self._in_transaction():
            super().commit()

    def rollback(self) -> None:
        self._pending_begin = None
        if self._in_transaction():
            super().rollback()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to pass as `create_async_engine(..., module=...)`."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *args: Any, **kwargs: Any) -> OneTripConnection:
        connection = aiosqlite.connect(*args, **kwargs)
        # A daemon thread never blocks interpreter exit, as in SQLAlchemy's own adapter.
        connection._thread.daemon = True
        driver: Any = await_(connection)
        return OneTripConnection(self, driver)


class SQLiteDriver:
    """Prepared statements on a pooled OneTripConnection (core.prepared.Driver)."""

    async def fetch(
        self, connection: PoolProxiedConnection, sql: str, arguments: tuple[Any, ...]
    ) -> list[Any]:
        adapt_connection = _adapted(connection)
        driver: aiosqlite.Connection = adapt_connection._connection  # type: ignore[assignment]
        submit: Callable[..., Awaitable[_Result]] = driver._execute
        begin = adapt_connection.take_pending_begin()
        try:
            _, _, _, rows = await submit(
                _run, driver._conn, sql, arguments, many=False, begin=begin
            )
        except Exception as error:
            adapt_connection._handle_exception(error)
        return rows

    async def join_transaction(self, connection: PoolProxiedConnection) -> None:
        # A write session's BEGIN IMMEDIATE is pending on the connection and travels
        # with the next statement, whoever sends it; read sessions run in autocommit.
        return None


def _adapted(connection: PoolProxiedConnection) -> OneTripConnection:
    adapt_connection: OneTripConnection = connection.dbapi_connection  # type: ignore[assignment]
    return adapt_connection


class ReadConnections:
    """The `Fetch` of prepared reads on SQLite: a few connections every request shares.

    A prepared read is one autocommit statement, executed and fetched in a single call
    on the connection's own thread, so it needs no exclusive checkout: each read is
    queued on the connection with the fewest reads in flight. That skips the pool, its
    greenlet hand-off and its waiting, which together cost more of the event loop's time
    than the trip to SQLite itself. The connections are `query_only`: nothing written
    through them can reach the database.
    """

    def __init__(
        self,
        dialect: Dialect,
        connect_args: Sequence[Any],
        connect_kwargs: Mapping[str, Any],
        *,
        connections: int,
    ) -> None:
        self._dialect = dialect
        self._connect_args = tuple(connect_args)
        self._connect_kwargs = {**connect_kwargs, "isolation_level": None}
        self._size = connections
        self._drivers: list[aiosqlite.Connection] = []
        self._in_flight: list[int] = []
        self._opening = asyncio.Lock()

    async def __call__(self, sql: str, arguments: tuple[Any, ...]) -> list[Any]:
        try:
            if not self._drivers:
                await self._open()
            slot = min(range(self._size), key=self._in_flight.__getitem__)
            driver = self._drivers[slot]
            submit: Callable[..., Awaitable[_Result]] = driver._execute
            self._in_flight[slot] += 1
            try:
                _, _, _, rows = await submit(
                    _run, driver._conn, sql, arguments, many=False, begin=None
                )
            finally:
                self._in_flight[slot] -= 1
        except sqlite3.Error as error:
            raise driver_error(error, self._dialect, sql, arguments) from error
        return rows

    async def _open(self) -> None:
        async with self._opening:
            if self._drivers:
                return
            drivers: list[aiosqlite.Connection] = []
            try:
                for _ in range(self._size):
                    driver = aiosqlite.connect(*self._connect_args, **self._connect_kwargs)
                    driver._thread.daemon = True  # as in OneTripDBAPI.connect
                    drivers.append(await driver)
                    for pragma in READ_PRAGMAS:
                        await driver.execute(pragma)
            except BaseException:
                # A database that cannot be opened now may be later: start afresh then.
                for opened in drivers:
                    await opened.close()
                raise
            self._in_flight = [0] * self._size
            self._drivers = drivers

    async def close(self) -> None:
        drivers, self._drivers = self._drivers, []
        for driver in drivers:
            await driver.close()
