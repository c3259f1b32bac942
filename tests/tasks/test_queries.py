"""Lists cost a fixed number of SQL statements, whatever the page size (no N+1).

Every statement runs through SQLAlchemy's engines, so a `before_cursor_execute` listener
sees them all. The first request of a token also checks it (and the loader reads its
row); the next ones find both in the exact caches and run the page's query alone. A page
of a project's tasks asked for again comes from the cache of pages.
"""

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment
from fasttrack.projects.models import MemberRole, Project, ProjectMember
from fasttrack.tasks.models import Task
from tests.factories import login, make_project, make_user
from tests.statements import Statements, counting_statements

ROWS = 100


@pytest.fixture
def statements(app: FastAPI) -> Iterator[Statements]:
    with counting_statements(app) as seen:
        yield seen


async def _count(
    client: AsyncClient,
    statements: Statements,
    path: str,
    limit: int,
    headers: dict[str, str],
) -> tuple[int, int]:
    statements.clear()
    response = await client.get(path, params={"limit": limit}, headers=headers)
    assert response.status_code == 200
    return len(response.json()["items"]), len(statements)


async def _first_then_pages(
    client: AsyncClient, statements: Statements, path: str, headers: dict[str, str]
) -> tuple[int, int, int]:
    """Statements of the token's first request (5 items), then of 100 and of 5 items."""
    first = await _count(client, statements, path, 5, headers)
    many = await _count(client, statements, path, 100, headers)
    few = await _count(client, statements, path, 5, headers)
    assert (first[0], many[0], few[0]) == (5, 100, 5)
    return first[1], many[1], few[1]


# First: authentication, then the project a project's list belongs to, then the page.
@pytest.mark.parametrize(
    ("path", "expected"),
    [("/projects/{project}/tasks", (3, 1, 0)), ("/users/me/tasks", (2, 1, 1))],
)
async def test_listing_100_tasks_costs_as_many_statements_as_listing_5(
    client: AsyncClient,
    session: AsyncSession,
    statements: Statements,
    path: str,
    expected: tuple[int, int, int],
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

    counts = await _first_then_pages(client, statements, url, headers)

    assert counts == expected, statements.seen


async def test_listing_100_comments_costs_as_many_statements_as_listing_5(
    client: AsyncClient, session: AsyncSession, statements: Statements
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

    counts = await _first_then_pages(client, statements, f"/tasks/{task.id}/comments", headers)

    # First: authentication, the task, the caller's access to its project, the page; then
    # the task once more (its first read told the cache its project, this one is stored)
    # and the page; then the page.
    assert counts == (4, 2, 1), statements.seen


async def test_listing_100_projects_costs_as_many_statements_as_listing_5(
    client: AsyncClient, session: AsyncSession, statements: Statements
) -> None:
    owner = await make_user(session)
    assert owner.id is not None
    projects = [Project(name=f"p{n}", owner_id=owner.id) for n in range(ROWS)]
    session.add_all(projects)
    await session.commit()
    session.add_all(
        ProjectMember(project_id=project.id, user_id=owner.id, role=MemberRole.owner)
        for project in projects
        if project.id is not None
    )
    await session.commit()
    headers = await login(client, owner)

    counts = await _first_then_pages(client, statements, "/projects", headers)

    # First: authentication, the page.
    assert counts == (2, 1, 1), statements.seen
