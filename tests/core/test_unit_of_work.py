"""The unit of work: its turn at the gate in front of the pool, handed back for slow work,
and given back by every request however it ends.

The gate tests build a `Database` of one place on the test session's own engines, so the
gate is the only thing a unit of work can wait for.
"""

import asyncio
from collections.abc import Collection
from datetime import timedelta
from typing import Final

import pytest
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth.models import RevokedToken
from fasttrack.core import db
from fasttrack.core.db import (
    Database,
    ReadWork,
    UnitOfWork,
    UnitOfWorkDep,
    UnitOfWorkRoute,
    WriteWork,
    execute,
    table_of,
    utcnow,
)
from fasttrack.core.effects import Effects
from fasttrack.core.security import PasswordHasher
from fasttrack.projects import service as project_service
from fasttrack.projects.models import Project, ProjectCreate
from fasttrack.users.models import UserRead
from tests.conftest import AppFactory
from tests.factories import (
    DEFAULT_PASSWORD,
    assert_problem,
    login,
    make_project,
    make_task,
    make_user,
)

# Long enough never to be reached by a unit of work that is served; reached only when
# something holds the place that should have been given back.
SERVED_WITHIN: Final = 5.0
# The wait of a gate whose refusals the test expects.
SHORT_WAIT: Final = 0.05
REVOKED = table_of(RevokedToken)


def _one_place(app: FastAPI, *, wait: float = SERVED_WITHIN) -> Database:
    engines: Database = app.state.database
    return Database(
        engine=engines.engine,
        write_engine=engines.write_engine,
        single_statement_engine=engines.single_statement_engine,
        read_places=1,
        write_places=1,
        wait=wait,
    )


async def _revoked_ids(session: AsyncSession) -> list[str]:
    rows = await execute(session, sa.select(REVOKED.c.id).order_by(REVOKED.c.id))
    return list(rows.scalars())


async def _insert_revoked(session: AsyncSession, jti: str) -> None:
    expires_at = utcnow() + timedelta(hours=1)
    await execute(session, sa.insert(REVOKED), {"id": jti, "expires_at": expires_at})


async def _served(work: UnitOfWork) -> AsyncSession:
    async with asyncio.timeout(SERVED_WITHIN):
        return await work.session()


async def _still_waiting(task: asyncio.Task[object]) -> bool:
    # A waiter blocked on the gate stays blocked however long the loop runs; a few
    # iterations give a wrongly served one every chance to finish.
    await asyncio.sleep(0.05)
    return not task.done()


async def test_the_gate_serves_waiters_in_arrival_order(app: FastAPI) -> None:
    database = _one_place(app)
    holder = database.unit_of_work(write=True)
    await holder.session()
    served: list[str] = []

    async def take(name: str) -> None:
        work = database.unit_of_work(write=True)
        session = await work.session()
        served.append(name)
        await execute(session, sa.text("SELECT 1"))
        await work.close()

    waiters = []
    for number in range(5):
        waiters.append(asyncio.create_task(take(f"waiter {number}")))
        await asyncio.sleep(0)  # it reaches the gate before the next one is created
    assert await _still_waiting(waiters[-1])
    assert served == []

    await holder.close()
    # Arrives the moment the place is free, before any waiter has run again: it must
    # still queue behind all of them.
    await take("latecomer")
    await asyncio.gather(*waiters)

    assert served == [*(f"waiter {number}" for number in range(5)), "latecomer"]


async def test_a_waiter_that_times_out_gets_a_pool_timeout_and_leaks_nothing(
    app: FastAPI,
) -> None:
    database = _one_place(app, wait=SHORT_WAIT)
    holder = database.unit_of_work(write=True)
    await holder.session()

    impatient = database.unit_of_work(write=True)
    with pytest.raises(PoolTimeoutError, match="no database connection became free"):
        await impatient.session()
    await impatient.close()  # it never held the place: closing it frees nothing
    await holder.close()

    first = database.unit_of_work(write=True)
    session = await first.session()
    assert (await execute(session, sa.text("SELECT 1"))).scalar_one() == 1
    # Still one place: the timed-out waiter neither took one nor added one.
    second = database.unit_of_work(write=True)
    with pytest.raises(PoolTimeoutError):
        await second.session()
    await first.close()
    third = database.unit_of_work(write=True)
    await third.session()
    await third.close()


async def test_closing_twice_gives_the_place_back_once(app: FastAPI) -> None:
    database = _one_place(app, wait=SHORT_WAIT)
    work = database.unit_of_work(write=True)
    await work.session()
    await work.close()
    await work.close()

    first = database.unit_of_work(write=True)
    await first.session()
    second = database.unit_of_work(write=True)
    with pytest.raises(PoolTimeoutError):
        await second.session()
    await first.close()


async def test_idle_commits_hands_the_place_over_and_takes_it_back(app: FastAPI) -> None:
    database = _one_place(app)
    sleeper = database.unit_of_work(write=True)
    session = await sleeper.session()
    await _insert_revoked(session, "written before idling")
    other_served, other_may_end = asyncio.Event(), asyncio.Event()
    seen_by_other: list[str] = []

    async def other() -> None:
        async with database.unit_of_work(write=True) as work:
            seen_by_other.extend(await _revoked_ids(await work.session()))
            other_served.set()
            await other_may_end.wait()

    async def slow_work() -> None:
        async with sleeper.idle():
            await other_served.wait()

    other_task = asyncio.create_task(other())
    assert await _still_waiting(other_task)  # the sleeper holds the one place
    sleeper_task = asyncio.create_task(slow_work())
    async with asyncio.timeout(SERVED_WITHIN):
        await other_served.wait()
    assert seen_by_other == ["written before idling"]  # idle committed first

    # The slow work is done, but the place is the other's until it ends.
    assert await _still_waiting(sleeper_task)
    other_may_end.set()
    async with asyncio.timeout(SERVED_WITHIN):
        await sleeper_task
        await other_task

    # Back with the place, the same session works on.
    await _insert_revoked(session, "written after idling")
    await session.commit()
    assert await _revoked_ids(session) == ["written after idling", "written before idling"]
    late = asyncio.create_task(_served(database.unit_of_work(write=True)))
    assert await _still_waiting(late)
    await sleeper.close()
    late_session = await late
    await late_session.close()


async def test_idle_before_the_session_opened_holds_no_place(app: FastAPI) -> None:
    database = _one_place(app, wait=SHORT_WAIT)
    work = database.unit_of_work(write=True)
    async with work.idle():
        other = database.unit_of_work(write=True)
        await other.session()
        await other.close()
    await work.close()


async def test_after_close_the_session_refuses_work(app: FastAPI) -> None:
    database = _one_place(app, wait=SHORT_WAIT)
    work = database.unit_of_work(write=True)
    session = await work.session()
    await _insert_revoked(session, "never committed")

    await work.close()

    with pytest.raises(InvalidRequestError, match="permanently closed"):
        await execute(session, sa.text("SELECT 1"))
    async with database.unit_of_work(write=True) as after:
        # The place is free at once, and what was not committed was rolled back.
        assert await _revoked_ids(await after.session()) == []


async def test_a_single_statement_unit_of_work_refuses_a_second_statement(app: FastAPI) -> None:
    database: Database = app.state.database
    async with database.unit_of_work(write=True) as work:
        session = await work.session(single_statement=True)
        await _insert_revoked(session, "first")
        # It would commit on its own, and nothing could roll the first one back.
        with pytest.raises(RuntimeError, match="second statement"):
            await _insert_revoked(session, "second")
        with pytest.raises(RuntimeError, match="second statement"):
            await _revoked_ids(session)
        await work.commit()

    async with database.session(write=False) as reader:
        assert await _revoked_ids(reader) == ["first"]


async def test_a_single_statement_unit_of_work_refuses_to_drop_orm_changes(
    app: FastAPI,
) -> None:
    database: Database = app.state.database
    async with database.unit_of_work(write=True) as work:
        session = await work.session(single_statement=True)
        session.add(RevokedToken(id="added", expires_at=utcnow()))
        with pytest.raises(RuntimeError, match="ORM changes"):
            await work.commit()


async def test_each_single_statement_unit_of_work_has_its_own_statement(app: FastAPI) -> None:
    database: Database = app.state.database
    for jti in ("one", "two"):
        async with database.unit_of_work(write=True) as work:
            await _insert_revoked(await work.session(single_statement=True), jti)
            await work.commit()

    async with database.session(write=False) as reader:
        assert await _revoked_ids(reader) == ["one", "two"]


# --- Through the HTTP API -----------------------------------------------------------------


class HeldHasher(PasswordHasher):
    """Hashes and verifies only once `release` is set, as a slow bcrypt would."""

    def __init__(self) -> None:
        super().__init__(rounds=4, workers=1)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def hash(self, password: str) -> str:
        self.entered.set()
        await self.release.wait()
        return await super().hash(password)

    async def verify(self, password: str, hashed: str) -> bool:
        self.entered.set()
        await self.release.wait()
        return await super().verify(password, hashed)


@pytest.mark.parametrize("slow", ["registration", "login", "password change"])
async def test_a_request_waiting_for_bcrypt_does_not_hold_the_writer(
    client: AsyncClient, session: AsyncSession, app: FastAPI, slow: str
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    hashing_user = await make_user(session)
    owner_headers = await login(client, owner)
    user_headers = await login(client, hashing_user)
    held = HeldHasher()
    # Not monkeypatch.setattr: its undo deletes the attribute from Starlette's State.
    original, app.state.hasher = app.state.hasher, held
    try:
        if slow == "registration":
            body = {"email": "slow@example.com", "password": DEFAULT_PASSWORD}
            slow_request = client.post("/auth/register", json=body)
        elif slow == "login":
            body = {"email": hashing_user.email, "password": DEFAULT_PASSWORD}
            slow_request = client.post("/auth/login", json=body)
        else:
            body = {"password": "a new password!", "current_password": DEFAULT_PASSWORD}
            slow_request = client.patch("/users/me", json=body, headers=user_headers)
        pending = asyncio.create_task(slow_request)
        async with asyncio.timeout(SERVED_WITHIN):
            await held.entered.wait()

        # Someone else's write goes through while the hash is being computed.
        async with asyncio.timeout(SERVED_WITHIN):
            created = await client.post(
                f"/projects/{project.id}/tasks", json={"title": "Meanwhile"}, headers=owner_headers
            )
        assert created.status_code == 201, created.text
        assert not pending.done()

        held.release.set()
        async with asyncio.timeout(SERVED_WITHIN):
            response = await pending
    finally:
        held.release.set()
        app.state.hasher = original
        held.close()
    assert response.status_code == (201 if slow == "registration" else 200), response.text


async def test_a_login_finds_the_user_and_checks_the_password_while_the_writer_is_taken(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    user = await make_user(session)
    database: Database = app.state.database
    held = HeldHasher()
    original, app.state.hasher = app.state.hasher, held
    try:
        async with database.unit_of_work(write=True) as holder:
            await holder.session()  # on SQLite, the one writer's turn
            body = {"email": user.email, "password": DEFAULT_PASSWORD}
            pending = asyncio.create_task(client.post("/auth/login", json=body))
            async with asyncio.timeout(SERVED_WITHIN):
                await held.entered.wait()  # looked up, on a reader
            held.release.set()
            await asyncio.sleep(0.05)
            # Only its one INSERT waits for the writer (on PostgreSQL the pool has room).
            assert not pending.done() or database.write_engine.dialect.name != "sqlite"
        async with asyncio.timeout(SERVED_WITHIN):
            response = await pending
    finally:
        held.release.set()
        app.state.hasher = original
        held.close()
    assert response.status_code == 200, response.text


def _declaring_app(database: Database) -> FastAPI:
    """Routes that answer whether their unit of work is on the writer."""
    router = APIRouter(route_class=UnitOfWorkRoute)

    async def on_the_writer(work: UnitOfWork) -> bool:
        return (await work.session()).bind is database.write_engine

    @router.get("/undeclared")
    async def get_undeclared(work: UnitOfWorkDep) -> bool:
        return await on_the_writer(work)

    @router.post("/undeclared")
    async def post_undeclared(work: UnitOfWorkDep) -> bool:
        return await on_the_writer(work)

    @router.post("/reads")
    async def post_reads(work: ReadWork) -> bool:
        return await on_the_writer(work)

    @router.get("/writes")
    async def get_writes(work: WriteWork) -> bool:
        return await on_the_writer(work)

    application = FastAPI()
    application.include_router(router)
    application.state.database = database
    return application


async def test_a_route_declares_whether_its_unit_of_work_writes(app: FastAPI) -> None:
    declaring = _declaring_app(app.state.database)
    transport = ASGITransport(app=declaring)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        answers = {
            "GET undeclared": (await http.get("/undeclared")).json(),
            "POST undeclared": (await http.post("/undeclared")).json(),
            "POST declared read": (await http.post("/reads")).json(),
            "GET declared write": (await http.get("/writes")).json(),
        }
    assert answers == {
        "GET undeclared": False,
        "POST undeclared": True,  # a route that does not say may write
        "POST declared read": False,
        "GET declared write": True,
    }


def test_a_route_cannot_declare_both_a_read_and_a_write() -> None:
    router = APIRouter(route_class=UnitOfWorkRoute)

    async def confused(reads: ReadWork, writes: WriteWork) -> None:
        return None

    with pytest.raises(TypeError, match="both a read and a write"):
        router.post("/confused")(confused)


@pytest.mark.parametrize("failure", ["crash", "invalid transition", "stale If-Match"])
async def test_a_failed_write_request_gives_the_writer_back(
    client: AsyncClient,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    task = await make_task(session, project=project)
    headers = await login(client, owner)
    create = project_service.create

    async def crash_after_writing(
        db_session: AsyncSession, body: ProjectCreate, *, owner: UserRead
    ) -> Project:
        monkeypatch.setattr(project_service, "create", create)
        db_session.add(Project(name="Half-written", owner_id=owner.id))
        await db_session.flush()
        raise RuntimeError("the handler fails after its first write")

    if failure == "crash":
        monkeypatch.setattr(project_service, "create", crash_after_writing)
        response = await client.post("/projects", json={"name": "x"}, headers=headers)
        assert_problem(response, 500, "internal_error")
    elif failure == "invalid transition":
        body = {"status": "done"}
        response = await client.patch(f"/tasks/{task.id}", json=body, headers=headers)
        assert_problem(response, 409, "invalid_transition")
    else:
        response = await client.patch(
            f"/tasks/{task.id}", json={"title": "t"}, headers={**headers, "If-Match": '"999"'}
        )
        assert_problem(response, 412, "precondition_failed")

    # On SQLite a place kept by the failed request would hold every later write back.
    async with asyncio.timeout(SERVED_WITHIN):
        created = await client.post("/projects", json={"name": "Next"}, headers=headers)
        listed = await client.get("/projects", headers=headers)
    assert created.status_code == 201, created.text
    names = [item["name"] for item in listed.json()["items"]]
    assert names == ["Next", project.name]  # the failed write left nothing behind


async def test_a_write_that_cannot_get_its_turn_in_time_is_a_503(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # How long a turn may be waited for: a constant on SQLite, a setting on PostgreSQL.
    monkeypatch.setattr(db.engines, "SQLITE_WAIT_SECONDS", SHORT_WAIT)
    async with app_factory(
        database_timeout=SHORT_WAIT, database_pool_size=1, database_max_overflow=0
    ) as small:
        database: Database = small.state.database
        async with AsyncClient(
            transport=ASGITransport(app=small), base_url="http://test/api/v1"
        ) as http:
            body = {"email": "turn@example.com", "password": DEFAULT_PASSWORD}
            async with database.unit_of_work(write=True) as holder:
                await holder.session()
                refused = await http.post("/auth/register", json=body)
            assert_problem(refused, 503, "service_unavailable")

            registered = await http.post("/auth/register", json=body)
            assert registered.status_code == 201, registered.text


class _Recorder:
    def __init__(self) -> None:
        self.published: list[set[str]] = []

    async def prepare(self, scopes: Collection[str]) -> None:
        return None

    async def publish(self, effects: Effects) -> None:
        self.published.append(set(effects.scopes))


@pytest.mark.parametrize("savepoint_ends", ["released", "rolled back"])
async def test_only_the_outermost_transaction_decides_which_effects_are_due(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, savepoint_ends: str
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(app.state.database, "publisher", recorder)
    async with app.state.database.unit_of_work(write=True) as work:
        session = await work.session()
        work.effects.invalidate("before")
        savepoint = await session.begin_nested()
        work.effects.invalidate("inside")
        if savepoint_ends == "released":
            await savepoint.commit()
        else:
            await savepoint.rollback()
        # Neither way is the change committed, nor what came before it undone.
        assert work.effects.scopes == {"before", "inside"}
        await work.commit()

    assert recorder.published == [{"before", "inside"}]


async def test_effects_of_a_rolled_back_transaction_are_never_published(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(app.state.database, "publisher", recorder)
    async with app.state.database.unit_of_work(write=True) as work:
        session = await work.session()
        work.effects.invalidate("dropped")
        await session.rollback()

    assert recorder.published == []
