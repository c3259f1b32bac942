"""Engines, the unit of work of a request, and the column types every table shares."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Annotated, Any, Final, Self

from fastapi import Depends, Path
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import Column, CursorResult, DateTime, Executable, RowMapping, Table, event, insert
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Dialect, ExecutionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.background import BackgroundTasks
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from fasttrack.core.background import Job, logged
from fasttrack.core.config import Settings
from fasttrack.core.effects import Effects, Publisher
from fasttrack.core.errors import ServiceUnavailable

logger = logging.getLogger("fasttrack.db")

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# Integer primary keys are INTEGER columns, 32-bit on PostgreSQL. A larger id names no row,
# and binding one makes the driver fail the whole query instead of finding nothing.
MAX_ID: Final = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]

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
# Table options of every table with an integer id: on SQLite, without AUTOINCREMENT the
# id of the newest row, once deleted, goes to the next row, and an old link or
# notification then names another resource. (PostgreSQL sequences never go back.)
NEVER_REUSE_IDS: Final = {"sqlite_autoincrement": True}
# Where a session finds the unit of work it belongs to (see `idle`).
UNIT_OF_WORK: Final = "fasttrack.unit_of_work"

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


class UnitOfWorkSession(Session):
    """The synchronous session under every unit of work's AsyncSession: its commits and
    rollbacks decide which of the unit of work's effects are due."""


@event.listens_for(UnitOfWorkSession, "before_commit")
def _before_commit(session: Session) -> None:
    work: UnitOfWork | None = session.info.get(UNIT_OF_WORK)
    if work is not None:
        work.check_prepared()


@event.listens_for(UnitOfWorkSession, "after_commit")
def _after_commit(session: Session) -> None:
    work: UnitOfWork | None = session.info.get(UNIT_OF_WORK)
    if work is not None:
        work.committed()


@event.listens_for(UnitOfWorkSession, "after_rollback")
def _after_rollback(session: Session) -> None:
    work: UnitOfWork | None = session.info.get(UNIT_OF_WORK)
    if work is not None:
        work.rolled_back()


class NoPublisher:
    """Effects of a database used without a hub: nothing else to tell."""

    async def prepare(self, scopes: Collection[str]) -> None:
        return None

    async def publish(self, effects: Effects) -> None:
        return None


class UnitOfWork:
    """The database work of one request or job: one session, opened on first use, and
    the effects of what it changes (core.effects).

    Before its session may take a connection, a unit of work waits for its turn at a
    gate, a first-come-first-served semaphore with as many places as the pool has
    connections. SQLAlchemy's pool hands a returned connection to whichever coroutine
    asks next, so under load a few waiters lose again and again (with 64 clients on 4
    connections, some waited seconds while the median was milliseconds); behind the
    gate the pool never has a waiter, and nobody waits longer than those ahead of them.
    On SQLite the write gate has one place: it is the writer's lock, taken in order.

    The turn is held until `end`, or handed back for slow work by `idle`. Effects
    registered on `effects` become due when the session commits (through `commit`, which
    first lets the publisher prepare them) and are dropped when it rolls back; `end`
    publishes what is due.
    """

    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        gate: asyncio.Semaphore,
        wait: float,
        *,
        publisher: Publisher,
        single_statement_factory: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._factory = factory
        self._single_statement_factory = single_statement_factory or factory
        self._gate = gate
        self._wait = wait
        self._publisher = publisher
        self._session: AsyncSession | None = None
        self._autocommits = False
        self._holds_turn = False
        self.effects = Effects()
        self._prepared: set[str] = set()
        self._due = Effects()

    @property
    def may_wait(self) -> bool:
        """Whether this unit of work may wait on another's read: not while it holds a
        turn, which that other may be waiting for."""
        return not self._holds_turn

    async def session(self, *, single_statement: bool = False) -> AsyncSession:
        """The session of this unit of work, waiting for its turn the first time.

        `single_statement`: the whole work is one statement, atomic by itself (triggers
        included), so it runs without a transaction around it, in autocommit: no BEGIN
        and no COMMIT (on PostgreSQL two round trips fewer, and the row locks the
        statement takes, a project's task counts, are held only while it runs; on SQLite
        one trip to the driver's thread fewer). Only the first call chooses; `commit`
        knows which it was. The statement commits as it runs, so the effects it has are
        registered, and prepared here, before it.
        """
        if self._session is None:
            if single_statement:
                await self._prepare()
            await self._take_turn()
            self._autocommits = single_statement
            factory = self._single_statement_factory if single_statement else self._factory
            self._session = factory(info={UNIT_OF_WORK: self})
        return self._session

    async def commit(self) -> None:
        """Prepare the effects, then commit the session's transaction, if it has one: a
        single statement in autocommit was committed by the database as it ended."""
        if self._session is None:
            return
        if self._autocommits:
            self.committed()
            return
        await self._prepare()
        await self._session.commit()

    async def _prepare(self) -> None:
        scopes = self.effects.scopes - self._prepared
        if not scopes:
            return
        try:
            await self._publisher.prepare(scopes)
        except Exception as exc:
            logger.warning("a change could not be made known, so it is not made: %s", exc)
            raise ServiceUnavailable("The service cannot record changes right now") from exc
        self._prepared |= scopes

    def check_prepared(self) -> None:
        unprepared = self.effects.scopes - self._prepared
        if unprepared:
            raise RuntimeError(f"commit through UnitOfWork.commit: {sorted(unprepared)} unprepared")

    def committed(self) -> None:
        self.check_prepared()
        self._due.take(self.effects)
        self.effects = Effects()
        self._prepared = set()

    def rolled_back(self) -> None:
        self.effects = Effects()
        self._prepared = set()

    async def _take_turn(self) -> None:
        try:
            async with asyncio.timeout(self._wait):
                await self._gate.acquire()
        except TimeoutError:
            # What the pool itself raises when it runs dry: answered 503 like an outage.
            raise PoolTimeoutError(
                f"no database connection became free within {self._wait:g} s"
            ) from None
        self._holds_turn = True

    def _end_turn(self) -> None:
        if self._holds_turn:
            self._holds_turn = False
            self._gate.release()

    @asynccontextmanager
    async def idle(self) -> AsyncIterator[None]:
        """Commit, and give the connection and the turn back while the block runs.

        For slow work that needs no database (password hashing), so that a request never
        holds a connection, or on SQLite the writer, while it waits. Loaded objects stay
        usable: sessions are created with `expire_on_commit=False`.
        """
        if self._session is None:
            yield
            return
        await self.commit()
        self._end_turn()
        try:
            yield
        finally:
            await self._take_turn()

    async def close(self) -> None:
        """Roll back what was not committed and end the turn; the session is then closed
        for good, so work after this point fails loudly instead of running unguarded."""
        session, self._session = self._session, None
        try:
            if session is not None:
                await _close(session)
        finally:
            self.rolled_back()
            self._end_turn()

    async def end(self) -> list[Job]:
        """Close, then publish what the commits made due; the jobs to run after."""
        await self.close()
        due, self._due = self._due, Effects()
        if due.scopes or due.events:
            await self._publisher.publish(due)
        return [logged(name, job) for name, job in due.jobs]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for job in await self.end():
            await job()


class Database:
    """The engines of one application instance and the gates in front of their pools.

    SQLite has two engines: readers in autocommit mode on a few connections (WAL lets
    them read while a write is in progress), and the single writer, whose transactions
    begin with `BEGIN IMMEDIATE`. PostgreSQL has one pool; safe requests use it in
    autocommit mode, which spares each read its BEGIN and ROLLBACK round trips.
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

    if writer:

        @event.listens_for(engine.sync_engine, "before_cursor_execute", named=True)
        def _begin_before_a_read(
            conn: Connection, cursor: Any, context: ExecutionContext, **_: Any
        ) -> None:
            # sqlite3 itself opens the transaction with BEGIN IMMEDIATE before an INSERT
            # or UPDATE, on the same trip to SQLite's thread. A transaction that reads
            # first (a loader, a version check) must take the write lock before that
            # read, or what it checks could change before it writes.
            if context.isinsert or context.isupdate:
                return
            driver = conn.connection.driver_connection
            if driver is not None and not driver.in_transaction:
                cursor.execute(SQLITE_BEGIN_WRITE)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        if writer:
            # sqlite3 then begins a transaction with BEGIN IMMEDIATE before each first
            # write; a first read begins it itself (_begin_before_a_read).
            dbapi_connection.isolation_level = "IMMEDIATE"
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

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
    autocommit = write_engine.execution_options(isolation_level="AUTOCOMMIT")
    return Database(
        engine=autocommit,
        write_engine=write_engine,
        single_statement_engine=autocommit,
        read_places=settings.database_pool_size + settings.database_max_overflow,
        write_places=None,
        wait=settings.database_timeout,
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


async def get_unit_of_work(connection: HTTPConnection) -> UnitOfWork:
    """The request's unit of work: one session for authentication, loaders and writes.

    Requests that may write get it on the writer (on SQLite the single writer), safe
    ones on the readers. UnitOfWorkRoute ends it.
    """
    work: UnitOfWork | None = connection.scope.get(UNIT_OF_WORK)
    if work is None:
        route = connection.scope.get("route")
        # Without the route class nothing would end it, and its turn would never return.
        assert isinstance(route, UnitOfWorkRoute), f"{route} is not a UnitOfWorkRoute"
        database: Database = connection.app.state.database
        method = connection.scope.get("method", "GET")
        work = database.unit_of_work(write=method not in SAFE_METHODS)
        connection.scope[UNIT_OF_WORK] = work
    return work


class UnitOfWorkRoute(APIRoute):
    """A route whose unit of work ends once the handler has answered, before the response
    is sent: what was not committed is rolled back, and the connection (with the turn)
    goes back before the client reads. A dependency with `yield` could do the same at
    the cost of an exit stack on every request.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_in_unit_of_work(request: Request) -> Response:
            try:
                response = await handle(request)
            except BaseException:
                # What committed before the failure happened all the same: it is published.
                await _end_unit_of_work(request, None)
                raise
            await _end_unit_of_work(request, response)
            return response

        return handle_in_unit_of_work


async def _end_unit_of_work(request: Request, response: Response | None) -> None:
    """End the request's unit of work, if it had one: every process hears of what it
    committed before the answer leaves, and its jobs run after the answer (at once if
    there is none)."""
    work: UnitOfWork | None = request.scope.get(UNIT_OF_WORK)
    if work is None:
        return
    jobs = await work.end()
    if response is None:
        for job in jobs:
            await job()
        return
    if jobs:
        tasks = response.background
        if not isinstance(tasks, BackgroundTasks):
            tasks = BackgroundTasks([] if tasks is None else [tasks])
        for job in jobs:
            tasks.add_task(job)
        response.background = tasks


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]


async def get_session(work: UnitOfWorkDep) -> AsyncSession:
    return await work.session()


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def unit_of_work_of(session: AsyncSession) -> UnitOfWork:
    work: UnitOfWork = session.info[UNIT_OF_WORK]
    return work


def effects_of(session: AsyncSession) -> Effects:
    """The effects of the unit of work `session` belongs to (core.effects)."""
    return unit_of_work_of(session).effects


async def commit(session: AsyncSession) -> None:
    """`UnitOfWork.commit` for the unit of work `session` belongs to."""
    await unit_of_work_of(session).commit()


@asynccontextmanager
async def idle(session: AsyncSession) -> AsyncIterator[None]:
    """`UnitOfWork.idle` for the unit of work `session` belongs to."""
    async with unit_of_work_of(session).idle():
        yield


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


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model.

    Reads are Core statements over tables, not ORM queries: they skip the ORM's per-row
    bookkeeping, and a read model validates each row they return.
    """
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def columns_of(model: type[SQLModel], shape: type[BaseModel]) -> list[Column[Any]]:
    """The columns of `model`'s table that the read model `shape` has fields for."""
    return [column for column in table_of(model).c if column.key in shape.model_fields]


class InsertReturning:
    """INSERT rows of a table model and return `returning`, with Core, in the session's
    transaction; the statement is built once.

    The table model's defaults (`utcnow`, `version=1`) fill what the caller leaves out,
    so they are declared once, on the model, without building a model instance per row
    (SQLModel's instrumented constructor is the dearer part of a small insert). An unset
    autoincrement key is left to the database.
    """

    def __init__(self, model: type[SQLModel], *, returning: Sequence[Column[Any]]) -> None:
        table = table_of(model)
        # Several rows go in one statement, and come back in the order they were given.
        self._statement = insert(table).returning(*returning, sort_by_parameter_order=True)
        self._defaults: dict[str, Any] = {}
        self._factories: dict[str, Callable[[], Any]] = {}
        for name, field in model.model_fields.items():
            if table.c[name].primary_key or field.is_required():
                continue
            if field.default_factory is None:
                self._defaults[name] = field.default
            else:
                # Factories that read the other fields would need a validated instance.
                assert not field.default_factory_takes_validated_data, name
                self._factories[name] = field.default_factory  # type: ignore[assignment]

    def _row(self, values: Mapping[str, Any]) -> dict[str, Any]:
        row = {**self._defaults, **values}
        for name, factory in self._factories.items():
            if name not in values:
                row[name] = factory()
        return row

    async def __call__(self, session: AsyncSession, **values: Any) -> RowMapping:
        result = await execute(session, self._statement, self._row(values))
        return result.mappings().one()

    async def many(
        self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]
    ) -> Sequence[RowMapping]:
        """Several rows in one statement; what each returns, in the order given."""
        if not rows:
            return []
        result = await execute(session, self._statement, [self._row(row) for row in rows])
        return result.mappings().all()


async def execute(
    session: AsyncSession,
    statement: Executable,
    parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> CursorResult[Any]:
    """Run a Core statement on the session's connection, in its transaction.

    Reads and plain writes are Core: SQLModel's `exec` is for ORM queries of table models.
    """
    connection = await session.connection()
    return await connection.execute(statement, parameters)
