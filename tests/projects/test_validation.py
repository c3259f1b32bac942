"""Field limits of project bodies: every broken limit is a 422 and changes nothing."""

from typing import Any

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import assert_problem, login, make_project, make_user


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "name"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "   "}, ["body", "name"]),
        ({"name": "x" * 201}, ["body", "name"]),
        ({"name": None}, ["body", "name"]),
        ({"name": 7}, ["body", "name"]),
        ({"name": "ok", "description": "x" * 5001}, ["body", "description"]),
        ({"name": "nul \x00"}, ["body", "name"]),
        ({"name": "ok", "description": "nul \x00"}, ["body", "description"]),
        ({"name": "ok", "owner_id": 1}, ["body", "owner_id"]),
        ({"name": "ok", "status": "active"}, ["body", "status"]),
    ],
)
async def test_create_refuses_a_broken_field(
    client: AsyncClient, session: AsyncSession, body: dict[str, Any], loc: list[str]
) -> None:
    owner = await make_user(session)
    headers = await login(client, owner)

    response = await client.post("/projects", json=body, headers=headers)

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == loc
    assert (await client.get("/projects", headers=headers)).json()["items"] == []


async def test_create_accepts_the_longest_allowed_fields(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    body = {"name": "n" * 200, "description": "d" * 5000}

    response = await client.post("/projects", json=body, headers=await login(client, owner))

    assert response.status_code == 201
    assert response.json()["name"] == body["name"]
    assert response.json()["description"] == body["description"]


async def test_create_refuses_a_body_that_is_not_json(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    headers = {**await login(client, owner), "Content-Type": "application/json"}

    response = await client.post("/projects", content=b"{not json", headers=headers)

    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": None}, ["body", "name"]),
        ({"status": None}, ["body", "status"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": " \t "}, ["body", "name"]),
        ({"name": "x" * 201}, ["body", "name"]),
        ({"description": "x" * 5001}, ["body", "description"]),
        ({"status": "deleted"}, ["body", "status"]),
        ({"owner_id": 99}, ["body", "owner_id"]),
        ({"task_counts": {"todo": 1}}, ["body", "task_counts"]),
    ],
)
async def test_update_refuses_a_broken_field_and_changes_nothing(
    client: AsyncClient, session: AsyncSession, body: dict[str, Any], loc: list[str]
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner, name="Kept", description="Kept too")
    headers = await login(client, owner)
    before = (await client.get(f"/projects/{project.id}", headers=headers)).json()

    response = await client.patch(f"/projects/{project.id}", json=body, headers=headers)

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == loc
    after = await client.get(f"/projects/{project.id}", headers=headers)
    assert after.json() == before
    assert after.headers["etag"] == '"1"'


@pytest.mark.parametrize("path", ["/projects/abc", "/projects/1.5", "/projects/%20"])
async def test_a_non_integer_project_id_is_a_validation_error(
    client: AsyncClient, session: AsyncSession, path: str
) -> None:
    owner = await make_user(session)

    response = await client.get(path, headers=await login(client, owner))

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["path", "project_id"]


@pytest.mark.parametrize("project_id", [0, -1, 2**31, 2**64])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_a_project_id_out_of_range_is_refused_not_a_crash(
    client: AsyncClient, session: AsyncSession, method: str, project_id: int
) -> None:
    owner = await make_user(session)

    response = await client.request(
        method, f"/projects/{project_id}", json={}, headers=await login(client, owner)
    )

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["path", "project_id"]
