"""The SQLite and PostgreSQL engines, and the Database that gates their pools."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final

from fastapi import Depends
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection

from fasttrack.core.config import Settings
from fasttrack.core.db.unit_of_work import (
    NoPublisher,
    UnitOfWork,
    UnitOfWorkSession,
    one_statement_only,
)
from fasttrack.core.effects import Publisher

SQLITE_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)
# Writers take the write lock when they begin: a transaction that reads before it writes
# (a loader, then the change) can never fail on a snapshot another writer made stale.
SQLITE_BEGIN_WRITE: Final = "BEGIN IMMEDIATE"
# Concurrent readers of SQLite (WAL lets them run beside the one writer).
SQLITE_READ_CONNECTIONS: Final = 4
# A burst of writes queues for the single SQLite writer; it may wait this long.
SQLITE_WAIT_SECONDS: Final = 30.0


class Database:
    """The engines of one application instance and the gates in front of their pools.

    SQLite has two engines: readers in autocommit mode on a few connections (WAL lets
    them read while a write is in progress), and the single writer, whose transactions
    begin with `BEGIN IMMEDIATE`. PostgreSQL has one pool; units of work that only read
    use it in autocommit mode, which spares each read its BEGIN and ROLLBACK round trips.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        write_engine: AsyncEngine,
        single_statement_engine: AsyncEngine,
        read_places: int,
        write_places: int | None,
        wait: float,
    ) -> None:
        self.engine = engine
        self.write_engine = write_engine
        self.single_statement_engine = single_statement_engine
        # A unit of work of single statements gets one: a second would commit on its own.
        if not event.contains(
            single_statement_engine.sync_engine, "before_cursor_execute", one_statement_only
        ):
            event.listen(
                single_statement_engine.sync_engine, "before_cursor_execute", one_statement_only
            )
        self._wait = wait
        # Set by whoever tells the deployment about changes (the hub).
        self.publisher: Publisher = NoPublisher()
        self._sessionmakers = {
            bind: async_sessionmaker(
                bind,
                class_=AsyncSession,
                sync_session_class=UnitOfWorkSession,
                expire_on_commit=False,
                close_resets_only=False,
            )
            for bind in (engine, write_engine, single_statement_engine)
        }
        read_gate = asyncio.Semaphore(read_places)
        # PostgreSQL: reads and writes share the pool, and so its gate.
        write_gate = read_gate if write_places is None else asyncio.Semaphore(write_places)
        self._gates = {False: read_gate, True: write_gate}

    def unit_of_work(self, *, write: bool) -> UnitOfWork:
        if not write:
            return UnitOfWork(
                self._sessionmakers[self.engine],
                self._gates[False],
                self._wait,
                publisher=self.publisher,
            )
        return UnitOfWork(
            self._sessionmakers[self.write_engine],
            self._gates[True],
            self._wait,
            publisher=self.publisher,
            single_statement_factory=self._sessionmakers[self.single_statement_engine],
        )

    @asynccontextmanager
    async def session(self, *, write: bool) -> AsyncIterator[AsyncSession]:
        """A session for work outside a request (start-up, jobs, the CLI, sockets); its
        effects are published, and its jobs run, when the block ends."""
        async with self.unit_of_work(write=write) as work:
            yield await work.session()

    async def dispose(self) -> None:
        pools = set()
        for engine in (self.write_engine, self.engine, self.single_statement_engine):
            if id(engine.pool) not in pools:
                pools.add(id(engine.pool))
                await engine.dispose()


def _sqlite_engine(url: str, *, connections: int, writer: bool) -> AsyncEngine:
    """A pool of SQLite connections: the writer's, whose transactions begin with BEGIN
    IMMEDIATE, or autocommit ones (the readers', and the writer's for single
    statements: behind the writers' gate, with its own connection)."""
    # Every checkout is a SQLAlchemy Connection, which ends its own transaction before it
    # returns to the pool: a second rollback there would be one more trip to SQLite's
    # thread. Autocommit connections never open one at all, so a rollback is skipped.
    options: dict[str, Any] = {"pool_reset_on_return": None}
    if not writer:
        options.update(isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
    engine = create_async_engine(
        url, pool_size=connections, max_overflow=0, pool_timeout=SQLITE_WAIT_SECONDS, **options
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        if writer:
            # sqlite3 begins no transaction of its own (it would begin only before an
            # INSERT or UPDATE, and with a plain BEGIN): the writer's "begin" does.
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    if writer:

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(connection: Connection) -> None:
            # SQLAlchemy begins a transaction before its first statement (a session's,
            # once it first needs its connection), and the write lock comes with it: a
            # transaction that reads first (a loader, a version check) holds the lock
            # before that read, so what it checks cannot change before it writes.
            connection.exec_driver_sql(SQLITE_BEGIN_WRITE)

    return engine


def create_database(settings: Settings) -> Database:
    if settings.is_sqlite:
        return Database(
            engine=_sqlite_engine(
                settings.database_url, connections=SQLITE_READ_CONNECTIONS, writer=False
            ),
            write_engine=_sqlite_engine(settings.database_url, connections=1, writer=True),
            single_statement_engine=_sqlite_engine(
                settings.database_url, connections=1, writer=False
            ),
            read_places=SQLITE_READ_CONNECTIONS,
            write_places=1,
            wait=SQLITE_WAIT_SECONDS,
        )
    write_engine = create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_timeout,
        connect_args={"timeout": settings.database_timeout},
    )
    return Database(
        engine=write_engine.execution_options(isolation_level="AUTOCOMMIT"),
        write_engine=write_engine,
        # The same pool and options again, apart so that only single statements are counted.
        single_statement_engine=write_engine.execution_options(isolation_level="AUTOCOMMIT"),
        read_places=settings.database_pool_size + settings.database_max_overflow,
        write_places=None,
        wait=settings.database_timeout,
    )


async def get_database(connection: HTTPConnection) -> Database:
    database: Database = connection.app.state.database
    return database


# For a route that reads in its own unit of work and opens another to write (login).
DatabaseDep = Annotated[Database, Depends(get_database)]
