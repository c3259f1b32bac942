"""Async engines, sessions and the column types every table shares."""

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import Depends, Path
from sqlalchemy import DateTime, event
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection

from fasttrack.core import postgres, sqlite
from fasttrack.core.config import Settings
from fasttrack.core.pool import FairAsyncQueuePool
from fasttrack.core.prepared import Driver, PooledFetch, QueryRunner, in_session
from fasttrack.core.sqlite import OneTripConnection, OneTripDBAPI

logger = logging.getLogger("fasttrack.db")

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# Integer primary keys are INTEGER columns, 32-bit on PostgreSQL. A larger id names no row,
# and binding one makes the driver fail the whole query instead of finding nothing.
MAX_ID: Final = 2**31 - 1
# SQLite connections for prepared reads, shared by all requests (see core.sqlite).
READ_CONNECTIONS: Final = 4
DRIVERS: Final[dict[str, Driver]] = {
    "sqlite": sqlite.SQLiteDriver(),
    "postgresql": postgres.AsyncpgDriver(),
}
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]

# Deterministic constraint names, so migrations can drop and alter them on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored as UTC on every backend.

    SQLite has no timezone type and hands back naive datetimes; this re-attaches UTC so
    the API never emits a naive timestamp.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use fasttrack.core.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Database:
    """The engines and session factories of one application instance.

    On SQLite, writes go through a dedicated one-connection engine that opens its
    transactions with ``BEGIN IMMEDIATE``: writers queue fairly on the pool instead of
    polling SQLite's busy handler, and a transaction that reads before it writes can never
    fail with a stale snapshot. The read engine serves safe requests' sessions and never
    waits for writers (WAL). On PostgreSQL both factories share one engine.

    `reads` runs prepared queries (core.prepared) outside any transaction: on SQLite on
    connections of its own (core.sqlite.ReadConnections), on PostgreSQL on the engine's
    pool. `statements(session)` runs them inside a session's transaction.
    """

    engine: AsyncEngine
    write_engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    write_sessionmaker: async_sessionmaker[AsyncSession]
    reads: QueryRunner

    async def dispose(self) -> None:
        await self.reads.close()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()


def _install_sqlite_pragmas(engine: AsyncEngine, *, begin: str | None) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Autocommit at the driver level: SQLAlchemy decides where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in sqlite.PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    if begin is not None:
        statement = begin

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            dbapi_connection = connection.connection.dbapi_connection
            if isinstance(dbapi_connection, OneTripConnection):
                dbapi_connection.begin_with_next_statement(statement)
            else:
                connection.exec_driver_sql(statement)


def _sqlite_engine(url: str, driver: OneTripDBAPI, *, connections: int) -> AsyncEngine:
    return create_async_engine(
        url,
        module=driver,
        poolclass=FairAsyncQueuePool,
        pool_size=connections,
        max_overflow=0,
        pool_timeout=30,
    )


def create_database(settings: Settings) -> Database:
    if settings.is_sqlite:
        dbapi = OneTripDBAPI()
        engine = _sqlite_engine(settings.database_url, dbapi, connections=4)
        write_engine = _sqlite_engine(settings.database_url, dbapi, connections=1)
        _install_sqlite_pragmas(engine, begin=None)
        _install_sqlite_pragmas(write_engine, begin=sqlite.BEGIN_WRITE)
        connect_args, connect_kwargs = engine.dialect.create_connect_args(engine.url)
        read_connections = sqlite.ReadConnections(
            engine.dialect, connect_args, connect_kwargs, connections=READ_CONNECTIONS
        )
        reads = QueryRunner(engine.dialect, read_connections, close=read_connections.close)
    else:
        engine = create_async_engine(
            settings.database_url,
            poolclass=FairAsyncQueuePool,
            pool_pre_ping=True,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout=settings.database_timeout,
            connect_args={"timeout": settings.database_timeout},
        )
        write_engine = engine
        reads = QueryRunner(engine.dialect, PooledFetch(engine, DRIVERS["postgresql"]))
    return Database(
        engine=engine,
        write_engine=write_engine,
        sessionmaker=async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False),
        write_sessionmaker=async_sessionmaker(
            write_engine, class_=AsyncSession, expire_on_commit=False
        ),
        reads=reads,
    )


async def _close(session: AsyncSession) -> None:
    try:
        # Shielded, as `async with session` does: a cancelled request still gives its
        # connection back to the pool.
        await asyncio.shield(session.close())
    except (DBAPIError, OSError) as exc:
        # The rollback of a connection that died under the session: SQLAlchemy has already
        # discarded it, and the request has its answer (or its own error) already, which a
        # failed clean-up must not replace with a 500 or a dropped response.
        logger.warning("closing a session on a lost database connection failed: %s", exc)


async def get_session(connection: HTTPConnection) -> AsyncIterator[AsyncSession]:
    """The request's unit of work; uncommitted work is rolled back when it closes.

    On SQLite, requests that may write get a session on the single-writer engine, which
    they hold only for their own statements: authentication and the loaders ran on the
    read pool before it.
    """
    database: Database = connection.app.state.database
    method = connection.scope.get("method", "GET")
    factory = database.sessionmaker if method in SAFE_METHODS else database.write_sessionmaker
    session = factory()
    try:
        yield session
    finally:
        await _close(session)


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def statements(session: AsyncSession) -> QueryRunner:
    """Prepared statements (core.prepared) in `session`'s transaction."""
    return await in_session(session, DRIVERS[session.get_bind().dialect.name])


async def get_reads(connection: HTTPConnection) -> QueryRunner:
    """The prepared-query runner of the read pool (see core.prepared)."""
    database: Database = connection.app.state.database
    return database.reads


ReadsDep = Annotated[QueryRunner, Depends(get_reads)]


def enum_type(enum: type[StrEnum]) -> SAEnum:
    """A portable enum column: VARCHAR plus a CHECK constraint, no native PostgreSQL type."""
    return SAEnum(
        enum,
        name=enum.__name__.lower(),
        native_enum=False,
        create_constraint=True,
        length=max(len(member.value) for member in enum),
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


async def insert_ignoring_duplicates(
    session: AsyncSession, model: type[SQLModel], rows: list[dict[str, Any]]
) -> None:
    """INSERT rows, silently skipping those whose primary key already exists."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(model).values(rows).on_conflict_do_nothing()
    await session.exec(statement)


async def release_connection(session: AsyncSession) -> None:
    """End the session's read-only transaction so its connection returns to the pool.

    Called before slow work that needs no database (password hashing), so a request
    does not hold a connection, or on SQLite the single writer, while it waits.
    Loaded objects stay usable: sessions are created with `expire_on_commit=False`.
    """
    await session.commit()
