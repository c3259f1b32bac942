"""Field limits of task bodies, queries and paths: a 422, never a 500, and nothing changed."""

from typing import Any

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import assert_problem, login, make_project, make_task, make_user

TOO_BIG_ID = 2**31
HUGE_ID = 2**64


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "title"]),
        ({"title": ""}, ["body", "title"]),
        ({"title": "   "}, ["body", "title"]),
        ({"title": "x" * 201}, ["body", "title"]),
        ({"title": None}, ["body", "title"]),
        ({"title": "t", "description": "x" * 10001}, ["body", "description"]),
        ({"title": "t", "status": "blocked"}, ["body", "status"]),
        ({"title": "t", "priority": "urgent"}, ["body", "priority"]),
        ({"title": "t", "priority": None}, ["body", "priority"]),
        ({"title": "t", "assignee_id": "bob"}, ["body", "assignee_id"]),
        ({"title": "t", "assignee_id": TOO_BIG_ID}, ["body", "assignee_id"]),
        ({"title": "t", "assignee_id": HUGE_ID}, ["body", "assignee_id"]),
        ({"title": "t", "project_id": 1}, ["body", "project_id"]),
        ({"title": "t", "completed_at": None}, ["body", "completed_at"]),
    ],
)
async def test_create_refuses_a_broken_field(
    client: AsyncClient, session: AsyncSession, body: dict[str, Any], loc: list[str]
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    headers = await login(client, owner)

    response = await client.post(f"/projects/{project.id}/tasks", json=body, headers=headers)

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == loc
    listed = await client.get(f"/projects/{project.id}/tasks", headers=headers)
    assert listed.json()["items"] == []


async def test_create_accepts_the_longest_allowed_fields(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    body = {"title": "t" * 200, "description": "d" * 10000}

    response = await client.post(
        f"/projects/{project.id}/tasks", json=body, headers=await login(client, owner)
    )

    assert response.status_code == 201
    assert (response.json()["title"], response.json()["description"]) == (
        body["title"],
        body["description"],
    )


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"title": None}, ["body", "title"]),
        ({"status": None}, ["body", "status"]),
        ({"priority": None}, ["body", "priority"]),
        ({"title": ""}, ["body", "title"]),
        ({"title": "x" * 201}, ["body", "title"]),
        ({"description": "x" * 10001}, ["body", "description"]),
        ({"status": "archived"}, ["body", "status"]),
        ({"priority": "HIGH"}, ["body", "priority"]),
        ({"assignee_id": 1.5}, ["body", "assignee_id"]),
        ({"assignee_id": HUGE_ID}, ["body", "assignee_id"]),
        ({"project_id": 1}, ["body", "project_id"]),
        ({"version": 7}, ["body", "version"]),
    ],
)
async def test_update_refuses_a_broken_field_and_changes_nothing(
    client: AsyncClient, session: AsyncSession, body: dict[str, Any], loc: list[str]
) -> None:
    owner = await make_user(session)
    task = await make_task(
        session, project=await make_project(session, owner=owner), description="Kept"
    )
    headers = await login(client, owner)
    before = (await client.get(f"/tasks/{task.id}", headers=headers)).json()

    response = await client.patch(f"/tasks/{task.id}", json=body, headers=headers)

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == loc
    after = await client.get(f"/tasks/{task.id}", headers=headers)
    assert after.json() == before
    assert after.headers["etag"] == '"1"'


@pytest.mark.parametrize(
    ("method", "path", "loc"),
    [
        ("GET", "/tasks/abc", ["path", "task_id"]),
        ("PATCH", "/tasks/1e3", ["path", "task_id"]),
        ("DELETE", "/tasks/-", ["path", "task_id"]),
        ("GET", "/projects/x/tasks", ["path", "project_id"]),
        ("POST", "/projects/x/tasks", ["path", "project_id"]),
    ],
)
async def test_a_non_integer_id_is_a_validation_error(
    client: AsyncClient, session: AsyncSession, method: str, path: str, loc: list[str]
) -> None:
    owner = await make_user(session)

    response = await client.request(
        method, path, json={"title": "t"}, headers=await login(client, owner)
    )

    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == loc


@pytest.mark.parametrize("task_id", [TOO_BIG_ID, HUGE_ID, 10**30])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_an_id_beyond_the_integer_range_is_refused_not_a_crash(
    client: AsyncClient, session: AsyncSession, method: str, task_id: int
) -> None:
    owner = await make_user(session)

    response = await client.request(
        method, f"/tasks/{task_id}", json={"title": "t"}, headers=await login(client, owner)
    )

    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == [
        "path",
        "task_id",
    ]


@pytest.mark.parametrize("path", ["/projects/{id}/tasks", "/users/me/tasks"])
async def test_an_assignee_filter_beyond_the_integer_range_is_refused(
    client: AsyncClient, session: AsyncSession, path: str
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)

    response = await client.get(
        path.format(id=project.id),
        params={"assignee_id": HUGE_ID},
        headers=await login(client, owner),
    )

    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == [
        "query",
        "assignee_id",
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"title": "nul \x00 inside"},
        {"title": "t", "description": "nul \x00 inside"},
    ],
)
async def test_a_nul_character_is_refused_on_every_database(
    client: AsyncClient, session: AsyncSession, body: dict[str, str]
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)

    response = await client.post(
        f"/projects/{project.id}/tasks", json=body, headers=await login(client, owner)
    )

    assert_problem(response, 422, "validation_error")
