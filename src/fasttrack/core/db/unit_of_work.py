"""The unit of work of a request or job: one session, its turn at the gate, its effects."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from contextlib import asynccontextmanager
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, Final, Self, get_origin, get_type_hints

from fastapi import Depends
from fastapi.routing import APIRoute
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.background import BackgroundTasks
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from fasttrack.core.background import Job, logged
from fasttrack.core.effects import Effects, Publisher
from fasttrack.core.errors import ServiceUnavailable

if TYPE_CHECKING:
    from fasttrack.core.db.engines import Database

logger = logging.getLogger("fasttrack.db")

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# Where a session finds the unit of work it belongs to (see `idle`).
UNIT_OF_WORK: Final = "fasttrack.unit_of_work"
# The execution option by which the connection of a single-statement unit of work names
# it (see `one_statement_only`).
SINGLE_STATEMENT: Final = "fasttrack_single_statement"


class UnitOfWorkSession(Session):
    """The synchronous session under every unit of work's AsyncSession: its commits and
    rollbacks decide which of the unit of work's effects are due."""


# Only the outermost transaction decides: releasing or rolling back a savepoint neither
# commits the change nor undoes what the transaction around it did.
@event.listens_for(UnitOfWorkSession, "before_commit")
def _before_commit(session: Session) -> None:
    work: UnitOfWork | None = session.info.get(UNIT_OF_WORK)
    if work is not None and not session.in_nested_transaction():
        work.check_prepared()


@event.listens_for(UnitOfWorkSession, "after_commit")
def _after_commit(session: Session) -> None:
    work: UnitOfWork | None = session.info.get(UNIT_OF_WORK)
    if work is not None and not session.in_nested_transaction():
        work.committed()


@event.listens_for(UnitOfWorkSession, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    work: UnitOfWork | None = session.info.get(UNIT_OF_WORK)
    if work is not None and previous_transaction.parent is None:
        work.rolled_back()


def one_statement_only(connection: Connection, *_: Any) -> None:
    """A `before_cursor_execute` listener of the engine of single statements: each
    statement is counted against the unit of work its connection names, if any."""
    work: UnitOfWork | None = connection.get_execution_options().get(SINGLE_STATEMENT)
    if work is not None:
        work.statement_runs()


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
        self._statements = 0
        self._holds_turn = False
        self.effects = Effects()
        self._prepared: set[str] = set()
        self._due: Effects | None = None

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
        registered, and prepared here, before it. A second statement is refused
        (RuntimeError), as are ORM changes, which only a transaction's commit flushes.
        """
        if self._session is None:
            if single_statement:
                await self._prepare()
            await self._take_turn()
            self._autocommits = single_statement
            factory = self._single_statement_factory if single_statement else self._factory
            self._session = factory(info={UNIT_OF_WORK: self})
            if single_statement:
                # Its connection, taken now, names it to `one_statement_only`.
                await self._session.connection(execution_options={SINGLE_STATEMENT: self})
        return self._session

    async def commit(self) -> None:
        """Prepare the effects, then commit the session's transaction, if it has one: a
        single statement in autocommit was committed by the database as it ended."""
        if self._session is None:
            return
        if self._autocommits:
            if self._session.new or self._session.dirty or self._session.deleted:
                raise RuntimeError(
                    "a single-statement unit of work has ORM changes, which only a "
                    "transaction's commit would flush: run the statement itself instead"
                )
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

    def statement_runs(self) -> None:
        """Count a statement of a single-statement unit of work; refuse the second, which
        would commit apart from the first, with nothing to roll the first back."""
        self._statements += 1
        if self._statements > 1:
            raise RuntimeError(
                "a unit of work opened with single_statement=True runs a second statement: "
                "open it without single_statement to run several in one transaction"
            )

    def check_prepared(self) -> None:
        unprepared = self.effects.scopes - self._prepared
        if unprepared:
            raise RuntimeError(f"commit through UnitOfWork.commit: {sorted(unprepared)} unprepared")

    def committed(self) -> None:
        self.check_prepared()
        if self._due is None:
            self._due = Effects()
        self._due.take(self.effects)
        self.effects = Effects()
        self._prepared = set()

    def rolled_back(self) -> None:
        if self.effects:
            self.effects = Effects()
        if self._prepared:
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
        due, self._due = self._due, None
        if not due:
            return []
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
    """The request's unit of work: one session for authentication, loaders and writes,
    on the writer (on SQLite the single writer) or on the readers, as its route declares
    (UnitOfWorkRoute.writes). UnitOfWorkRoute ends it.
    """
    work: UnitOfWork | None = connection.scope.get(UNIT_OF_WORK)
    if work is None:
        route = connection.scope.get("route")
        # Without the route class nothing would end it, and its turn would never return.
        assert isinstance(route, UnitOfWorkRoute), f"{route} is not a UnitOfWorkRoute"
        database: Database = connection.app.state.database
        work = database.unit_of_work(write=route.writes)
        connection.scope[UNIT_OF_WORK] = work
    return work


class Access(StrEnum):
    """What a route does with its unit of work, declared on the type of a handler
    parameter: `work: ReadWork` or `work: WriteWork`."""

    read = "read"
    write = "write"


def _declared_access(endpoint: Callable[..., Any]) -> Access | None:
    declared = {
        marker
        for hint in get_type_hints(endpoint, include_extras=True).values()
        if get_origin(hint) is Annotated
        for marker in hint.__metadata__
        if isinstance(marker, Access)
    }
    if len(declared) > 1:
        raise TypeError(f"{endpoint.__qualname__} declares both a read and a write unit of work")
    return declared.pop() if declared else None


class UnitOfWorkRoute(APIRoute):
    """A route whose unit of work ends once the handler has answered, before the response
    is sent: what was not committed is rolled back, and the connection (with the turn)
    goes back before the client reads. A dependency with `yield` could do the same at
    the cost of an exit stack on every request.

    `writes`, decided once when the route is built: whether its unit of work is on the
    writer. A handler declares it with a `ReadWork` or `WriteWork` parameter; a route
    that does not say writes if its method is unsafe, so a change is never left without
    the writer it needs.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        declared = _declared_access(endpoint)
        unsafe = bool(self.methods and self.methods - SAFE_METHODS)
        self.writes = unsafe if declared is None else declared is Access.write

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
# The same unit of work, with the route's declaration of what it does (see UnitOfWorkRoute).
ReadWork = Annotated[UnitOfWork, Depends(get_unit_of_work), Access.read]
WriteWork = Annotated[UnitOfWork, Depends(get_unit_of_work), Access.write]


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
