"""Property: walking a list while rows come and go never repeats an item and never skips
one that existed for the whole walk; filters hold on every page (SPEC §6)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from httpx import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment
from fasttrack.core.db import utcnow
from fasttrack.notifications.models import Notification, NotificationType
from fasttrack.projects.models import Project, ProjectStatus
from fasttrack.tasks.models import Task, TaskStatus
from fasttrack.users.models import User
from tests.factories import login, make_project, make_task, make_user

WALK_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Between two page fetches: insert rows (True = matches the filter) and delete rows
# (indexes into the rows alive at that moment).
Step = tuple[list[bool], list[int]]
steps = st.lists(
    st.tuples(st.lists(st.booleans(), max_size=4), st.lists(st.integers(0, 10_000), max_size=3)),
    max_size=12,
)
initial_rows = st.lists(st.booleans(), max_size=30)
limits = st.integers(min_value=1, max_value=6)


@dataclass
class ListUnderTest:
    """One list: how to add and remove its rows, and how it is read and ordered."""

    path: str
    params: dict[str, str]
    descending: bool
    model: type[SQLModel]
    insert: Callable[[bool], Awaitable[int]]
    matching: set[int] = field(default_factory=set)
    alive: list[int] = field(default_factory=list)

    async def add(self, matches: bool) -> None:
        row_id = await self.insert(matches)
        self.alive.append(row_id)
        if matches:
            self.matching.add(row_id)


async def _delete(session: AsyncSession, model: type[SQLModel], ids: list[int]) -> None:
    key = sa.inspect(model).primary_key[0]
    await session.exec(sa.delete(model).where(key.in_(ids)))
    await session.commit()


async def _walk(
    client: AsyncClient,
    session: AsyncSession,
    under_test: ListUnderTest,
    headers: dict[str, str],
    *,
    initial: list[bool],
    limit: int,
    churn: list[Step],
) -> None:
    for matches in initial:
        await under_test.add(matches)
    survivors = set(under_test.alive)
    ever_matching = set(under_test.matching)

    seen: list[int] = []
    cursor: str | None = None
    for page_number in range(len(initial) + 4 * len(churn) + 2):
        params: dict[str, Any] = {**under_test.params, "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(under_test.path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        if page_number < len(churn):
            inserts, deletions = churn[page_number]
            for matches in inserts:
                await under_test.add(matches)
            ever_matching |= under_test.matching
            doomed = {under_test.alive[i % len(under_test.alive)] for i in deletions}
            if under_test.alive and doomed:
                await _delete(session, under_test.model, sorted(doomed))
                under_test.alive = [row for row in under_test.alive if row not in doomed]
                survivors -= doomed
    else:
        raise AssertionError("the walk did not end")

    assert len(seen) == len(set(seen)), "an item came twice"
    assert seen == sorted(seen, reverse=under_test.descending), "pages out of order"
    assert set(seen) <= ever_matching, "an item outside the filter or never created"
    missing = (survivors & under_test.matching) - set(seen)
    assert not missing, f"skipped items that existed throughout: {missing}"


async def _cleanup(session: AsyncSession, user: User) -> None:
    # The autouse cleanup runs once per test, not per example: deleting the user cascades
    # to their projects, tasks and comments.
    await session.exec(sa.delete(User).where(col(User.id) == user.id))
    await session.commit()


@WALK_SETTINGS
@given(initial=initial_rows, limit=limits, churn=steps)
async def test_walking_a_filtered_project_task_list_under_churn(
    app: FastAPI, client: AsyncClient, initial: list[bool], limit: int, churn: list[Step]
) -> None:
    async with app.state.database.session(write=False) as session:
        owner = await make_user(session)
        try:
            project = await make_project(session, owner=owner)

            async def insert(matches: bool) -> int:
                status = TaskStatus.in_progress if matches else TaskStatus.todo
                task = await make_task(session, project=project, status=status)
                assert task.id is not None
                return task.id

            under_test = ListUnderTest(
                path=f"/projects/{project.id}/tasks",
                params={"status": "in_progress"},
                descending=True,
                model=Task,
                insert=insert,
            )
            headers = await login(client, owner)
            await _walk(
                client, session, under_test, headers, initial=initial, limit=limit, churn=churn
            )
        finally:
            await _cleanup(session, owner)


@WALK_SETTINGS
@given(initial=initial_rows, limit=limits, churn=steps)
async def test_walking_the_comments_of_a_task_under_churn(
    app: FastAPI, client: AsyncClient, initial: list[bool], limit: int, churn: list[Step]
) -> None:
    async with app.state.database.session(write=False) as session:
        owner = await make_user(session)
        try:
            project = await make_project(session, owner=owner)
            task, other_task = (
                await make_task(session, project=project),
                await make_task(session, project=project),
            )

            async def insert(matches: bool) -> int:
                # A comment on another task must never show up in this task's list.
                target = task if matches else other_task
                assert target.id is not None
                assert owner.id is not None
                comment = Comment(task_id=target.id, author_id=owner.id, body="c")
                session.add(comment)
                await session.commit()
                assert comment.id is not None
                return comment.id

            under_test = ListUnderTest(
                path=f"/tasks/{task.id}/comments",
                params={},
                descending=False,
                model=Comment,
                insert=insert,
            )
            headers = await login(client, owner)
            await _walk(
                client, session, under_test, headers, initial=initial, limit=limit, churn=churn
            )
        finally:
            await _cleanup(session, owner)


@WALK_SETTINGS
@given(initial=initial_rows, limit=limits, churn=steps)
async def test_walking_the_filtered_project_list_under_churn(
    app: FastAPI, client: AsyncClient, initial: list[bool], limit: int, churn: list[Step]
) -> None:
    async with app.state.database.session(write=False) as session:
        owner = await make_user(session)
        try:

            async def insert(matches: bool) -> int:
                status = ProjectStatus.archived if matches else ProjectStatus.active
                project = await make_project(session, owner=owner, status=status)
                assert project.id is not None
                return project.id

            under_test = ListUnderTest(
                path="/projects",
                params={"status": "archived"},
                descending=True,
                model=Project,
                insert=insert,
            )
            headers = await login(client, owner)
            await _walk(
                client, session, under_test, headers, initial=initial, limit=limit, churn=churn
            )
        finally:
            await _cleanup(session, owner)


@WALK_SETTINGS
@given(initial=initial_rows, limit=limits, churn=steps)
async def test_walking_the_unread_notifications_under_churn(
    app: FastAPI, client: AsyncClient, initial: list[bool], limit: int, churn: list[Step]
) -> None:
    async with app.state.database.session(write=False) as session:
        user, other = await make_user(session), await make_user(session)
        try:
            assert user.id is not None
            assert other.id is not None
            user_id, other_id = user.id, other.id

            async def insert(matches: bool) -> int:
                # Read ones fall outside `unread=true`; every page must keep them out.
                notification = Notification(
                    user_id=user_id,
                    type=NotificationType.comment_added,
                    data={},
                    read_at=None if matches else utcnow(),
                )
                session.add(notification)
                # Another user's notification must never show up in this inbox.
                session.add(Notification(user_id=other_id, type=NotificationType.comment_added))
                await session.commit()
                assert notification.id is not None
                return notification.id

            under_test = ListUnderTest(
                path="/notifications",
                params={"unread": "true"},
                descending=True,
                model=Notification,
                insert=insert,
            )
            headers = await login(client, user)
            await _walk(
                client, session, under_test, headers, initial=initial, limit=limit, churn=churn
            )
        finally:
            await _cleanup(session, user)
            await _cleanup(session, other)
