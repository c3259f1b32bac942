"""Projects: create, list, read, change and delete; members see, owners and admins change."""

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.projects.models import MemberRole, Project, ProjectStatus
from fasttrack.users.models import User
from tests.factories import (
    assert_problem,
    bearer,
    login,
    make_admin,
    make_assigned_task,
    make_member,
    make_project,
    make_user,
)


async def test_create_project_makes_the_caller_owner(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    headers = await login(client, owner)

    response = await client.post(
        "/projects", json={"name": "  Launch  ", "description": "Launch day"}, headers=headers
    )

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Launch"
    assert body["description"] == "Launch day"
    assert body["status"] == "active"
    assert body["owner_id"] == owner.id
    assert body["task_counts"] == {"todo": 0, "in_progress": 0, "done": 0, "total": 0}
    assert body["created_at"].endswith(("Z", "+00:00"))
    assert response.headers["etag"] == '"1"'
    location = response.headers["location"]
    assert location.endswith(f"/api/v1/projects/{body['id']}")
    again = await client.get(location, headers=headers)
    assert again.status_code == 200
    assert again.json() == body


async def test_list_shows_only_the_projects_the_caller_is_a_member_of_newest_first(
    client: AsyncClient, session: AsyncSession
) -> None:
    me, other = await make_user(session), await make_user(session)
    first = await make_project(session, owner=me)
    await make_project(session, owner=other)
    joined = await make_project(session, owner=other)
    await make_member(session, project=joined, user=me, role=MemberRole.viewer)
    second = await make_project(session, owner=me)

    response = await client.get("/projects", headers=await login(client, me))

    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["items"]] == [second.id, joined.id, first.id]
    assert body["has_more"] is False
    assert body["next_cursor"] is None


@pytest.mark.parametrize("role", list(MemberRole))
async def test_list_filters_by_the_callers_role(
    client: AsyncClient, session: AsyncSession, role: MemberRole
) -> None:
    me, other = await make_user(session), await make_user(session)
    by_role: dict[MemberRole, Project] = {MemberRole.owner: await make_project(session, owner=me)}
    for joined_as in (MemberRole.editor, MemberRole.viewer):
        by_role[joined_as] = await make_project(session, owner=other)
        await make_member(session, project=by_role[joined_as], user=me, role=joined_as)

    response = await client.get(
        "/projects", params={"role": role.value}, headers=await login(client, me)
    )

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [by_role[role].id]


async def test_admin_lists_every_project(client: AsyncClient, session: AsyncSession) -> None:
    admin = await make_admin(session)
    projects = [await make_project(session, owner=await make_user(session)) for _ in range(3)]

    response = await client.get("/projects", headers=await login(client, admin))

    assert [item["id"] for item in response.json()["items"]] == [p.id for p in projects[::-1]]


@pytest.mark.parametrize("wanted", list(ProjectStatus))
async def test_list_filters_by_status(
    client: AsyncClient, session: AsyncSession, wanted: ProjectStatus
) -> None:
    owner = await make_user(session)
    by_status = {
        status: await make_project(session, owner=owner, status=status) for status in ProjectStatus
    }

    response = await client.get(
        "/projects", params={"status": wanted.value}, headers=await login(client, owner)
    )

    assert [item["id"] for item in response.json()["items"]] == [by_status[wanted].id]


async def test_list_refuses_an_unknown_status(client: AsyncClient, session: AsyncSession) -> None:
    owner = await make_user(session)
    response = await client.get(
        "/projects", params={"status": "deleted"}, headers=await login(client, owner)
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", "status"]


async def _editor_of(session: AsyncSession, project_id: int) -> User:
    editor = await make_user(session)
    await make_member(session, project=await session.get_one(Project, project_id), user=editor)
    return editor


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 200), ("admin", 200), ("stranger", 404), ("assignee", 200)],
)
async def test_get_project_visibility(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)
    project_id = task.project_id

    response = await client.get(
        f"/projects/{project_id}", headers=await login(client, people[role])
    )

    if expected == 200:
        assert response.status_code == 200
        assert response.json()["id"] == project_id
        assert response.headers["etag"] == '"1"'
    else:
        assert_problem(response, 404, "not_found")
        assert "etag" not in response.headers


async def test_missing_project_looks_like_an_invisible_one(
    client: AsyncClient, session: AsyncSession
) -> None:
    caller = await make_user(session)
    hidden = await make_project(session, owner=await make_user(session))
    headers = await login(client, caller)

    invisible = await client.get(f"/projects/{hidden.id}", headers=headers)
    missing = await client.get("/projects/999999", headers=headers)

    assert_problem(invisible, 404, "not_found")
    assert_problem(missing, 404, "not_found")
    assert invisible.json()["detail"] == missing.json()["detail"]


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("owner", 200),
        ("admin", 200),
        ("stranger", 404),
        ("assignee", 403),
        ("editor", 403),
    ],
)
async def test_update_project_by_role(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)
    people["editor"] = await _editor_of(session, task.project_id)
    owner = people["owner"]
    url = f"/projects/{task.project_id}"
    before = (await client.get(url, headers=await login(client, owner))).json()

    response = await client.patch(
        url, json={"name": "After", "status": "archived"}, headers=await login(client, people[role])
    )

    after = (await client.get(url, headers=await login(client, owner))).json()
    if expected == 200:
        assert response.status_code == 200
        assert response.json()["name"] == "After"
        assert response.headers["etag"] == '"2"'
        assert (after["name"], after["status"]) == ("After", "archived")
        assert after["updated_at"] > after["created_at"]
        assert after["owner_id"] == owner.id
    else:
        assert_problem(response, expected, "forbidden" if expected == 403 else "not_found")
        assert after == before


async def test_null_description_clears_it(client: AsyncClient, session: AsyncSession) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner, description="Old text")
    headers = await login(client, owner)

    response = await client.patch(
        f"/projects/{project.id}", json={"description": None}, headers=headers
    )

    assert response.status_code == 200
    assert response.json()["description"] is None
    assert (await client.get(f"/projects/{project.id}", headers=headers)).json()[
        "description"
    ] is None


@pytest.mark.parametrize("body", [{}, {"name": "Same"}])
async def test_patch_without_a_change_keeps_the_version(
    client: AsyncClient, session: AsyncSession, body: dict[str, str]
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner, name="Same")
    headers = await login(client, owner)
    before = (await client.get(f"/projects/{project.id}", headers=headers)).json()

    response = await client.patch(f"/projects/{project.id}", json=body, headers=headers)

    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json() == before


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("owner", 204),
        ("admin", 204),
        ("stranger", 404),
        ("assignee", 403),
        ("editor", 403),
    ],
)
async def test_delete_project_by_role(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)
    people["editor"] = await _editor_of(session, task.project_id)
    url = f"/projects/{task.project_id}"

    response = await client.delete(url, headers=await login(client, people[role]))

    after = await client.get(url, headers=await login(client, people["owner"]))
    if expected == 204:
        assert response.status_code == 204
        assert response.content == b""
        assert_problem(after, 404, "not_found")
    else:
        assert_problem(response, expected, "forbidden" if expected == 403 else "not_found")
        assert after.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/projects"),
        ("GET", "/projects"),
        ("GET", "/projects/{id}"),
        ("PATCH", "/projects/{id}"),
        ("DELETE", "/projects/{id}"),
    ],
)
@pytest.mark.parametrize("token", [None, "not-a-jwt"])
async def test_project_endpoints_require_a_valid_token(
    client: AsyncClient, session: AsyncSession, method: str, path: str, token: str | None
) -> None:
    project = await make_project(session, owner=await make_user(session), name="Untouched")
    headers = {} if token is None else bearer(token)

    response = await client.request(
        method, path.format(id=project.id), json={"name": "Changed"}, headers=headers
    )

    assert_problem(response, 401, "not_authenticated" if token is None else "invalid_token")
    assert response.headers["www-authenticate"] == "Bearer"
    await session.refresh(project)
    assert project.name == "Untouched"
