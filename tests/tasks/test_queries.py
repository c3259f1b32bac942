"""Lists cost a fixed number of SQL statements, whatever the page size (no N+1).

Statements reach the database two ways: through SQLAlchemy's engines (the ORM and
Core), seen by a `before_cursor_execute` listener, and as prepared queries
(core.prepared), every one of which passes through `QueryRunner.all`. Both are counted.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import event
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment
from fasttrack.core.prepared import PreparedQuery, QueryRunner, Row
from fasttrack.projects.models import Project
from fasttrack.tasks.models import Task
from tests.factories import login, make_project, make_user

ROWS = 100


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, *args: Any) -> None:
        """A `before_cursor_execute` listener: (connection, cursor, statement, ...)."""
        self.statements.append(args[2])


@pytest.fixture
def statements(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[StatementCounter]:
    database = app.state.database
    engines = {
        id(engine): engine.sync_engine for engine in (database.engine, database.write_engine)
    }
    counter = StatementCounter()
    run_prepared = QueryRunner.all

    async def counted(runner: QueryRunner, query: PreparedQuery, **values: Any) -> list[Row]:
        counter.statements.append(str(query.statement))
        return await run_prepared(runner, query, **values)

    monkeypatch.setattr(QueryRunner, "all", counted)
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", counter)


async def _count(
    client: AsyncClient,
    statements: StatementCounter,
    path: str,
    limit: int,
    headers: dict[str, str],
) -> tuple[int, int]:
    statements.statements.clear()
    response = await client.get(path, params={"limit": limit}, headers=headers)
    assert response.status_code == 200
    return len(response.json()["items"]), len(statements.statements)


# Authentication, then the project a project's list belongs to, then the page itself.
@pytest.mark.parametrize(
    ("path", "expected"), [("/projects/{project}/tasks", 3), ("/users/me/tasks", 2)]
)
async def test_listing_100_tasks_costs_as_many_statements_as_listing_5(
    client: AsyncClient,
    session: AsyncSession,
    statements: StatementCounter,
    path: str,
    expected: int,
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    assert project.id is not None
    assert owner.id is not None
    session.add_all(
        Task(project_id=project.id, title=f"t{n}", assignee_id=owner.id) for n in range(ROWS)
    )
    await session.commit()
    headers = await login(client, owner)
    url = path.format(project=project.id)

    few = await _count(client, statements, url, 5, headers)
    many = await _count(client, statements, url, 100, headers)

    assert few[0] == 5
    assert many[0] == 100
    assert many[1] == few[1] == expected, statements.statements


async def test_listing_100_comments_costs_as_many_statements_as_listing_5(
    client: AsyncClient, session: AsyncSession, statements: StatementCounter
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    assert project.id is not None
    assert owner.id is not None
    task = Task(project_id=project.id, title="t")
    session.add(task)
    await session.commit()
    assert task.id is not None
    session.add_all(Comment(task_id=task.id, author_id=owner.id, body="c") for _ in range(ROWS))
    await session.commit()
    headers = await login(client, owner)

    few = await _count(client, statements, f"/tasks/{task.id}/comments", 5, headers)
    many = await _count(client, statements, f"/tasks/{task.id}/comments", 100, headers)

    assert (few[0], many[0]) == (5, 100)
    # Authentication, the task, the page.
    assert many[1] == few[1] == 3, statements.statements


async def test_listing_100_projects_costs_as_many_statements_as_listing_5(
    client: AsyncClient, session: AsyncSession, statements: StatementCounter
) -> None:
    owner = await make_user(session)
    assert owner.id is not None
    session.add_all(Project(name=f"p{n}", owner_id=owner.id) for n in range(ROWS))
    await session.commit()
    headers = await login(client, owner)

    few = await _count(client, statements, "/projects", 5, headers)
    many = await _count(client, statements, "/projects", 100, headers)

    assert (few[0], many[0]) == (5, 100)
    # Authentication, the page.
    assert many[1] == few[1] == 2, statements.statements
