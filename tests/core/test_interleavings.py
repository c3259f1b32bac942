"""Interleavings that timing alone rarely produces, forced step by step.

* A rule that decides a write is checked on the rows the write locks: a task reassigned
  after the request loaded it is no longer the former assignee's to change, and a member
  removed after it may neither change the task nor comment on it.
* A request holding a turn of a database gate never waits on a read that waits for that
  turn: the stall this once produced lasted until the gate's timeout, then answered 503.
* A read that raced a write's commit is never served after the write has answered.
"""

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments import service as comment_service
from fasttrack.comments.models import Comment
from fasttrack.core.cache import (
    SHARED_READ_WAIT_SECONDS,
    project_members_scope,
    project_tasks_scope,
)
from fasttrack.core.db import Database, commit, effects_of, execute
from fasttrack.notifications.models import Notification
from fasttrack.projects.models import MemberRole, Project, ProjectMember
from fasttrack.tasks import service as task_service
from fasttrack.tasks.models import Task, TaskView
from fasttrack.users.models import User
from tests.factories import (
    assert_problem,
    login,
    make_assigned_task,
    make_comment,
    make_member,
    make_user,
)

# Far below the gates' own timeouts (30 s on SQLite): a wait on a wait would exceed it.
BOUND_SECONDS = 3.0

# What another writer commits between the request's load and its write.
Change = Callable[[AsyncSession, TaskView], Awaitable[None]]


async def _change_after_load(
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    client: AsyncClient,
    path: str,
    *,
    headers: dict[str, str],
    change: Change,
) -> None:
    """The next task loader returns the task (and the caller's access) as they were, then
    another writer makes `change` and commits, before the request goes on with what it
    loaded.

    The task is read twice first, as earlier requests would have: the loader then serves
    it from the caches, without the writer's turn the other writer needs on SQLite.
    """
    for _ in range(2):
        assert (await client.get(path, headers=headers)).status_code == 200
    load = task_service.get_visible

    async def load_then_change(*args: Any, **kwargs: Any) -> object:
        monkeypatch.setattr(task_service, "get_visible", load)
        loaded = await load(*args, **kwargs)
        assert loaded is not None
        async with app.state.database.session(write=True) as other:
            await change(other, loaded.task)
            await commit(other)
        return loaded

    monkeypatch.setattr(task_service, "get_visible", load_then_change)


def _reassign(to: User) -> Change:
    async def reassign(other: AsyncSession, task: TaskView) -> None:
        effects_of(other).invalidate(project_tasks_scope(task.project_id))
        statement = sa.update(Task).where(col(Task.id) == task.id).values(assignee_id=to.id)
        await execute(other, statement)

    return reassign


def _remove_member(user: User) -> Change:
    """What removing `user` from the task's project does (SPEC §11): their tasks there are
    unassigned and their membership is gone, in one transaction."""

    async def remove(other: AsyncSession, task: TaskView) -> None:
        project_id = task.project_id
        effects_of(other).invalidate(
            project_members_scope(project_id), project_tasks_scope(project_id)
        )
        await execute(
            other,
            sa.update(Task)
            .where(col(Task.project_id) == project_id, col(Task.assignee_id) == user.id)
            .values(assignee_id=None),
        )
        await execute(
            other,
            sa.delete(ProjectMember).where(
                col(ProjectMember.project_id) == project_id, col(ProjectMember.user_id) == user.id
            ),
        )

    return remove


async def _rows(session: AsyncSession, model: type[Any], **where: Any) -> list[Any]:
    return list((await session.exec(select(model).filter_by(**where))).all())


async def _with_bob(session: AsyncSession) -> tuple[dict[str, User], Task, User]:
    """make_assigned_task's cast and task, and Bob, a fellow viewer of the project."""
    people, task = await make_assigned_task(session)
    bob = await make_user(session)
    project = await session.get(Project, task.project_id)
    assert project is not None
    await make_member(session, project=project, user=bob, role=MemberRole.viewer)
    return people, task, bob


async def test_an_assignee_reassigned_while_their_patch_runs_gets_403_and_changes_nothing(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, task, bob = await _with_bob(session)
    headers = await login(client, people["assignee"])
    path = f"/tasks/{task.id}"
    await _change_after_load(app, monkeypatch, client, path, headers=headers, change=_reassign(bob))

    response = await client.patch(path, json={"status": "in_progress"}, headers=headers)

    assert_problem(response, 403, "forbidden")
    stored = await session.get(Task, task.id, populate_existing=True)
    assert stored is not None
    assert (stored.status, stored.assignee_id, stored.version) == ("todo", bob.id, 1)
    assert await _rows(session, Notification, type="status_changed") == []
    # Still a member: the task is still theirs to see, no longer theirs to change.
    assert (await client.get(path, headers=headers)).status_code == 200


async def test_an_assignee_reassigned_while_commenting_still_comments_as_a_member(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, task, bob = await _with_bob(session)
    headers = await login(client, people["assignee"])
    await _change_after_load(
        app, monkeypatch, client, f"/tasks/{task.id}", headers=headers, change=_reassign(bob)
    )

    response = await client.post(
        f"/tasks/{task.id}/comments", json={"body": "mine still?"}, headers=headers
    )

    assert response.status_code == 201, response.text
    assert [c.body for c in await _rows(session, Comment, task_id=task.id)] == ["mine still?"]
    # The assignee as the comment commits is told, not the one the request loaded.
    notified = await _rows(session, Notification, type="comment_added")
    assert len(notified) == 2
    assert {n.user_id for n in notified} == {people["owner"].id, bob.id}


@pytest.mark.parametrize("write", ["patch", "comment"])
async def test_a_member_removed_while_their_write_runs_gets_404_and_writes_nothing(
    app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    write: str,
) -> None:
    people, task = await make_assigned_task(session)
    assignee = people["assignee"]
    headers = await login(client, assignee)
    path = f"/tasks/{task.id}"
    await _change_after_load(
        app, monkeypatch, client, path, headers=headers, change=_remove_member(assignee)
    )

    if write == "patch":
        response = await client.patch(path, json={"status": "in_progress"}, headers=headers)
    else:
        response = await client.post(f"{path}/comments", json={"body": "hi"}, headers=headers)

    assert_problem(response, 404, "not_found")
    stored = await session.get(Task, task.id, populate_existing=True)
    assert stored is not None
    assert (stored.status, stored.assignee_id, stored.version) == ("todo", None, 1)
    assert await _rows(session, Comment, task_id=task.id) == []
    assert await _rows(session, Notification, user_id=people["owner"].id) == []
    assert_problem(await client.get(path, headers=headers), 404, "not_found")


async def test_the_owner_reassigning_meanwhile_does_not_stop_the_owners_own_patch(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, task, bob = await _with_bob(session)
    headers = await login(client, people["owner"])
    path = f"/tasks/{task.id}"
    await _change_after_load(app, monkeypatch, client, path, headers=headers, change=_reassign(bob))

    response = await client.patch(path, json={"title": "kept"}, headers=headers)

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


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
    # On SQLite the comment's loader already holds the single writer: nothing comes between.
    reason="set TEST_DATABASE_URL (PostgreSQL) to run",
)
async def test_a_member_removed_while_deleting_their_comment_gets_404_and_it_stays(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, task = await make_assigned_task(session)
    assignee = people["assignee"]
    comment = await make_comment(session, task=task, author=assignee)
    headers = await login(client, assignee)
    load = comment_service.get_visible
    removal = _remove_member(assignee)

    async def load_then_remove(*args: Any, **kwargs: Any) -> object:
        monkeypatch.setattr(comment_service, "get_visible", load)
        loaded = await load(*args, **kwargs)
        async with app.state.database.session(write=True) as other:
            await removal(other, TaskView.model_validate(task, from_attributes=True))
            await commit(other)
        return loaded

    monkeypatch.setattr(comment_service, "get_visible", load_then_remove)

    response = await client.delete(f"/comments/{comment.id}", headers=headers)

    assert_problem(response, 404, "not_found")
    assert [row.id for row in await _rows(session, Comment, task_id=task.id)] == [comment.id]
