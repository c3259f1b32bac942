"""Interleavings that timing alone rarely produces, forced step by step.

* A rule that decides a write is checked on the row the write locks: a task reassigned
  after the request loaded it is no longer the former assignee's to change or comment on.
* A request holding a turn of a database gate never waits on a read that waits for that
  turn: the stall this once produced lasted until the gate's timeout, then answered 503.
* A read that raced a write's commit is never served after the write has answered.
"""

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment
from fasttrack.core.cache import SHARED_READ_WAIT_SECONDS, project_tasks_scope
from fasttrack.core.db import Database, commit, effects_of, execute
from fasttrack.notifications.models import Notification
from fasttrack.tasks import service as task_service
from fasttrack.tasks.models import Task
from tests.factories import assert_problem, login, make_assigned_task, make_user

# Far below the gates' own timeouts (30 s on SQLite): a wait on a wait would exceed it.
BOUND_SECONDS = 3.0


async def _reassign_after_load(
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    client: AsyncClient,
    path: str,
    headers: dict[str, str],
    *,
    to: int,
) -> None:
    """The next task loader returns the task as it was, then another writer gives it to
    user `to` and commits, before the request goes on with what it loaded.

    The task is read twice first, as earlier requests would have: the loader then serves
    it from the cache, without the writer's turn the other writer needs on SQLite.
    """
    for _ in range(2):
        assert (await client.get(path, headers=headers)).status_code == 200
    load = task_service.get_visible

    async def load_then_reassign(*args: Any, **kwargs: Any) -> object:
        monkeypatch.setattr(task_service, "get_visible", load)
        loaded = await load(*args, **kwargs)
        assert loaded is not None
        async with app.state.database.session(write=True) as other:
            effects_of(other).invalidate(project_tasks_scope(loaded.project_id))
            await execute(
                other, sa.update(Task).where(col(Task.id) == loaded.id).values(assignee_id=to)
            )
            await commit(other)
        return loaded

    monkeypatch.setattr(task_service, "get_visible", load_then_reassign)


async def _rows(session: AsyncSession, model: type[Any], **where: Any) -> list[Any]:
    statement = sa.select(model).filter_by(**where)
    return list((await session.exec(statement)).all())  # type: ignore[call-overload]


async def test_an_assignee_reassigned_while_their_patch_runs_gets_404_and_changes_nothing(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, task = await make_assigned_task(session)
    bob = await make_user(session)
    headers = await login(client, people["assignee"])
    await _reassign_after_load(
        app,
        monkeypatch,
        client,
        f"/tasks/{task.id}",
        headers,
        to=bob.id,  # type: ignore[arg-type]
    )

    response = await client.patch(
        f"/tasks/{task.id}", json={"status": "in_progress"}, headers=headers
    )

    assert_problem(response, 404, "not_found")
    stored = await session.get(Task, task.id, populate_existing=True)
    assert stored is not None
    assert (stored.status, stored.assignee_id, stored.version) == ("todo", bob.id, 1)
    assert await _rows(session, Notification, type="status_changed") == []
    assert (await client.get(f"/tasks/{task.id}", headers=headers)).status_code == 404


async def test_a_former_assignee_reassigned_while_commenting_gets_404_and_adds_nothing(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, task = await make_assigned_task(session)
    bob = await make_user(session)
    headers = await login(client, people["assignee"])
    await _reassign_after_load(
        app,
        monkeypatch,
        client,
        f"/tasks/{task.id}",
        headers,
        to=bob.id,  # type: ignore[arg-type]
    )

    response = await client.post(
        f"/tasks/{task.id}/comments", json={"body": "mine still?"}, headers=headers
    )

    assert_problem(response, 404, "not_found")
    assert await _rows(session, Comment, task_id=task.id) == []
    assert await _rows(session, Notification, type="comment_added") == []


async def test_the_owner_reassigning_meanwhile_does_not_stop_the_owners_own_patch(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, task = await make_assigned_task(session)
    bob = await make_user(session)
    headers = await login(client, people["owner"])
    await _reassign_after_load(
        app,
        monkeypatch,
        client,
        f"/tasks/{task.id}",
        headers,
        to=bob.id,  # type: ignore[arg-type]
    )

    response = await client.patch(f"/tasks/{task.id}", json={"title": "kept"}, headers=headers)

    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["assignee_id"]) == ("kept", bob.id)


async def test_a_turn_holder_missing_an_entry_never_waits_on_a_read_that_waits_for_its_turn(
    app: FastAPI,
) -> None:
    engines: Database = app.state.database
    # A write gate of one place, as SQLite's is, on PostgreSQL too.
    database = Database(
        engine=engines.engine,
        write_engine=engines.write_engine,
        single_statement_engine=engines.single_statement_engine,
        read_places=1,
        write_places=1,
        wait=BOUND_SECONDS * 2,
    )
    cache = app.state.caches.new(max_entries=10)
    reads: list[str] = []

    def read_in(work: Any, name: str) -> Any:
        async def read() -> int:
            session = await work.session()  # X waits here for the turn Z holds
            reads.append(name)
            return int((await execute(session, sa.select(sa.literal(7)))).scalar_one())

        return read

    # A first read tells the cache the entry's scopes: both callers below stamp them.
    assert await cache.get_or_read("entry", lambda: asyncio.sleep(0, 7), scopes=["s"]) == 7
    cache.forget(["s"])
    async with database.unit_of_work(write=True) as z, database.unit_of_work(write=True) as x:
        await z.session()  # Z holds the writer's turn, the only one
        shared = asyncio.create_task(
            cache.get_or_read("entry", read_in(x, "X"), scopes=["s"], may_wait=x.may_wait)
        )
        await asyncio.sleep(0.05)  # X has published its read and waits for a turn
        # Not even the bounded wait a caller without a turn may spend on a shared read.
        async with asyncio.timeout(SHARED_READ_WAIT_SECONDS / 2):
            value = await cache.get_or_read(
                "entry", read_in(z, "Z"), scopes=["s"], may_wait=z.may_wait
            )
        assert value == 7
        await z.end()
        async with asyncio.timeout(BOUND_SECONDS):
            assert await shared == 7
    assert "Z" in reads


async def test_a_read_that_raced_a_commit_is_not_served_after_the_write_answered(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, task = await make_assigned_task(session)
    headers = await login(client, people["owner"])
    path = f"/tasks/{task.id}"
    assert (await client.get(path, headers=headers)).status_code == 200  # scopes learnt
    raced: list[int] = []

    async def read_then_let_a_write_commit(*args: Any, **kwargs: Any) -> Any:
        result = await execute(*args, **kwargs)
        rows = result.mappings().all()
        if not raced:
            # The row is read; before this reader stores it, a write commits and answers.
            raced.append(1)
            patched = await client.patch(path, json={"title": "after"}, headers=headers)
            assert patched.status_code == 200, patched.text

        class Result:
            def mappings(self) -> Any:
                return self

            def first(self) -> Any:
                return rows[0] if rows else None

        return Result()

    monkeypatch.setattr(task_service, "execute", read_then_let_a_write_commit)
    old = await client.get(path, headers=headers)
    monkeypatch.undo()

    assert old.json()["title"] == task.title  # what the racing read saw
    again = await client.get(path, headers=headers)
    assert again.json()["title"] == "after"
