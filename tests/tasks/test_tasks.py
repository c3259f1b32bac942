"""Tasks: create, list with filters, read, change and delete, and who may do what."""

from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.projects import access as project_access
from fasttrack.projects.models import Project
from fasttrack.tasks.models import Priority, Task, TaskStatus
from fasttrack.users.models import User
from tests.factories import (
    assert_problem,
    bearer,
    login,
    make_assigned_task,
    make_member,
    make_project,
    make_task,
    make_user,
    race_after_load,
)


async def test_create_task_answers_201_with_location_and_etag(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    project = await make_project(session, owner=owner)
    await make_member(session, project=project, user=assignee)
    headers = await login(client, owner)

    response = await client.post(
        f"/projects/{project.id}/tasks",
        json={
            "title": "  Write the spec  ",
            "description": "All of it",
            "priority": "high",
            "assignee_id": assignee.id,
        },
        headers=headers,
    )

    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "Write the spec"
    assert body["description"] == "All of it"
    assert (body["status"], body["priority"]) == ("todo", "high")
    assert (body["project_id"], body["assignee_id"]) == (project.id, assignee.id)
    assert body["completed_at"] is None
    assert response.headers["etag"] == '"1"'
    location = response.headers["location"]
    assert location.endswith(f"/api/v1/tasks/{body['id']}")
    again = await client.get(location, headers=headers)
    assert again.status_code == 200
    assert again.json() == body


async def test_create_task_defaults(client: AsyncClient, session: AsyncSession) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)

    response = await client.post(
        f"/projects/{project.id}/tasks", json={"title": "t"}, headers=await login(client, owner)
    )

    body = response.json()
    assert (body["status"], body["priority"]) == ("todo", "medium")
    assert (body["description"], body["assignee_id"], body["completed_at"]) == (None, None, None)


async def test_a_task_created_done_is_completed(client: AsyncClient, session: AsyncSession) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)

    response = await client.post(
        f"/projects/{project.id}/tasks",
        json={"title": "t", "status": "done"},
        headers=await login(client, owner),
    )

    assert response.status_code == 201
    assert response.json()["completed_at"] is not None


async def _editor_of(session: AsyncSession, project_id: int) -> User:
    editor = await make_user(session)
    await make_member(session, project=await session.get_one(Project, project_id), user=editor)
    return editor


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 201), ("admin", 201), ("editor", 201), ("assignee", 403), ("stranger", 404)],
)
async def test_create_task_by_role(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)
    project = task.project_id
    people["editor"] = await _editor_of(session, project)
    headers = await login(client, people[role])

    response = await client.post(
        f"/projects/{project}/tasks", json={"title": "new"}, headers=headers
    )

    titles = [
        item["title"]
        for item in (
            await client.get(
                f"/projects/{project}/tasks", headers=await login(client, people["owner"])
            )
        ).json()["items"]
    ]
    if expected == 201:
        assert response.status_code == 201
        assert "new" in titles
    else:
        assert_problem(response, expected, "forbidden" if expected == 403 else "not_found")
        assert "new" not in titles


@pytest.mark.parametrize("case", ["unknown", "deactivated member", "not a member"])
async def test_assignee_must_be_an_active_member_of_the_project(
    client: AsyncClient, session: AsyncSession, case: str
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    headers = await login(client, owner)
    deactivated = await make_user(session, is_active=False)
    await make_member(session, project=project, user=deactivated)
    outsider = await make_user(session)
    await make_project(session, owner=outsider)
    assert deactivated.id is not None
    assert outsider.id is not None
    assignee_id = {
        "unknown": 999_999,
        "deactivated member": deactivated.id,
        "not a member": outsider.id,
    }[case]

    created = await client.post(
        f"/projects/{project.id}/tasks",
        json={"title": "t", "assignee_id": assignee_id},
        headers=headers,
    )
    task = await make_task(session, project=project)
    patched = await client.patch(
        f"/tasks/{task.id}", json={"assignee_id": assignee_id, "title": "changed"}, headers=headers
    )

    for response in (created, patched):
        problem = assert_problem(response, 422, "validation_error")
        assert problem["errors"][0]["loc"] == ["body", "assignee_id"]
    listed = (await client.get(f"/projects/{project.id}/tasks", headers=headers)).json()["items"]
    assert [(item["id"], item["title"], item["assignee_id"]) for item in listed] == [
        (task.id, task.title, None)
    ]


async def test_null_assignee_and_description_clear_them(
    client: AsyncClient, session: AsyncSession
) -> None:
    people, task = await make_assigned_task(session, description="Some text")
    headers = await login(client, people["owner"])

    response = await client.patch(
        f"/tasks/{task.id}", json={"assignee_id": None, "description": None}, headers=headers
    )

    assert response.status_code == 200
    after = (await client.get(f"/tasks/{task.id}", headers=headers)).json()
    assert (after["assignee_id"], after["description"]) == (None, None)
    # Unassigning leaves the membership: the former assignee still sees it, as a viewer.
    still = await client.get(f"/tasks/{task.id}", headers=await login(client, people["assignee"]))
    assert still.status_code == 200
    assert still.json()["assignee_id"] is None


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 200), ("assignee", 200), ("admin", 200), ("stranger", 404)],
)
async def test_get_task_visibility(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)

    response = await client.get(f"/tasks/{task.id}", headers=await login(client, people[role]))

    if expected == 200:
        assert response.status_code == 200
        assert response.json()["id"] == task.id
        assert response.headers["etag"] == '"1"'
    else:
        assert_problem(response, 404, "not_found")


async def test_an_assignee_sees_the_project_and_its_whole_task_list(
    client: AsyncClient, session: AsyncSession
) -> None:
    people, task = await make_assigned_task(session)
    project = await session.get_one(Project, task.project_id)
    other = await make_task(session, project=project)
    headers = await login(client, people["assignee"])

    assert (await client.get(f"/tasks/{task.id}", headers=headers)).status_code == 200
    assert (await client.get(f"/tasks/{other.id}", headers=headers)).status_code == 200
    shown = await client.get(f"/projects/{task.project_id}", headers=headers)
    assert shown.status_code == 200
    listed = await client.get(f"/projects/{task.project_id}/tasks", headers=headers)
    assert [item["id"] for item in listed.json()["items"]] == [other.id, task.id]


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 200), ("admin", 200), ("assignee", 200), ("stranger", 404)],
)
async def test_list_project_tasks_by_role(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)

    response = await client.get(
        f"/projects/{task.project_id}/tasks", headers=await login(client, people[role])
    )

    if expected == 200:
        assert [item["id"] for item in response.json()["items"]] == [task.id]
    else:
        assert_problem(response, 404, "not_found")


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 200), ("admin", 200), ("editor", 200), ("assignee", 403), ("stranger", 404)],
)
async def test_only_editors_change_other_fields_than_status(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session, title="Before", priority=Priority.low)
    people["editor"] = await _editor_of(session, task.project_id)
    changes = {"title": "After", "priority": "high", "status": "in_progress"}

    response = await client.patch(
        f"/tasks/{task.id}", json=changes, headers=await login(client, people[role])
    )

    after = await client.get(f"/tasks/{task.id}", headers=await login(client, people["owner"]))
    fields = ("title", "priority", "status")
    if expected == 200:
        assert response.status_code == 200
        assert response.headers["etag"] == '"2"'
        assert tuple(after.json()[name] for name in fields) == ("After", "high", "in_progress")
    else:
        assert_problem(response, expected, "forbidden" if expected == 403 else "not_found")
        assert tuple(after.json()[name] for name in fields) == ("Before", "low", "todo")
        assert after.headers["etag"] == '"1"'


async def test_an_assignee_may_change_the_status(
    client: AsyncClient, session: AsyncSession
) -> None:
    people, task = await make_assigned_task(session)
    headers = await login(client, people["assignee"])

    response = await client.patch(
        f"/tasks/{task.id}", json={"status": "in_progress"}, headers=headers
    )

    assert response.status_code == 200
    assert (await client.get(f"/tasks/{task.id}", headers=headers)).json()[
        "status"
    ] == "in_progress"


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 204), ("admin", 204), ("editor", 204), ("assignee", 403), ("stranger", 404)],
)
async def test_delete_task_by_role(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)
    people["editor"] = await _editor_of(session, task.project_id)

    response = await client.delete(f"/tasks/{task.id}", headers=await login(client, people[role]))

    after = await client.get(f"/tasks/{task.id}", headers=await login(client, people["owner"]))
    if expected == 204:
        assert response.status_code == 204
        assert_problem(after, 404, "not_found")
    else:
        assert_problem(response, expected, "forbidden" if expected == 403 else "not_found")
        assert after.status_code == 200


async def _mixed_tasks(session: AsyncSession, project: Project, people: list[User]) -> list[Task]:
    tasks = []
    for index in range(12):
        tasks.append(
            await make_task(
                session,
                project=project,
                status=list(TaskStatus)[index % 3],
                priority=list(Priority)[index // 3 % 3],
                assignee=people[index % len(people)] if index % 4 else None,
            )
        )
    return tasks


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"status": "todo"},
        {"status": "done"},
        {"priority": "high"},
        {"assignee_id": 0},
        {"status": "in_progress", "priority": "low"},
        {"status": "todo", "assignee_id": 1},
    ],
)
async def test_list_project_tasks_filters(
    client: AsyncClient, session: AsyncSession, query: dict[str, Any]
) -> None:
    owner = await make_user(session)
    people = [await make_user(session), await make_user(session)]
    project = await make_project(session, owner=owner)
    tasks = await _mixed_tasks(session, project, people)
    await make_task(session, project=await make_project(session, owner=owner))
    if "assignee_id" in query:
        query = {**query, "assignee_id": people[query["assignee_id"]].id}

    response = await client.get(
        f"/projects/{project.id}/tasks",
        params={**query, "limit": 100},
        headers=await login(client, owner),
    )

    expected = [
        task.id
        for task in reversed(tasks)
        if all(str(getattr(task, name)) == str(value) for name, value in query.items())
    ]
    assert expected
    assert [item["id"] for item in response.json()["items"]] == expected


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ({"status": "blocked"}, ["query", "status"]),
        ({"priority": "urgent"}, ["query", "priority"]),
        ({"assignee_id": "me"}, ["query", "assignee_id"]),
    ],
)
async def test_list_filters_refuse_bad_values(
    client: AsyncClient, session: AsyncSession, query: dict[str, str], loc: list[str]
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    headers = await login(client, owner)

    for path in (f"/projects/{project.id}/tasks", "/users/me/tasks"):
        response = await client.get(path, params=query, headers=headers)
        assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == loc


async def test_my_tasks_lists_tasks_assigned_to_me_across_projects(
    client: AsyncClient, session: AsyncSession
) -> None:
    me, other = await make_user(session), await make_user(session)
    first = await make_project(session, owner=await make_user(session))
    second = await make_project(session, owner=await make_user(session))
    mine = [
        await make_task(session, project=first, assignee=me),
        await make_task(session, project=second, assignee=me, status=TaskStatus.in_progress),
        await make_task(session, project=first, assignee=me, priority=Priority.high),
    ]
    await make_task(session, project=first, assignee=other)
    await make_task(session, project=second)
    own_project = await make_project(session, owner=me)
    await make_task(session, project=own_project)
    headers = await login(client, me)

    everything = await client.get("/users/me/tasks", headers=headers)
    in_progress = await client.get(
        "/users/me/tasks", params={"status": "in_progress"}, headers=headers
    )
    high = await client.get("/users/me/tasks", params={"priority": "high"}, headers=headers)
    first_page = await client.get("/users/me/tasks", params={"limit": 2}, headers=headers)
    second_page = await client.get(
        "/users/me/tasks",
        params={"limit": 2, "cursor": first_page.json()["next_cursor"]},
        headers=headers,
    )

    assert [item["id"] for item in everything.json()["items"]] == [t.id for t in mine[::-1]]
    assert [item["id"] for item in in_progress.json()["items"]] == [mine[1].id]
    assert [item["id"] for item in high.json()["items"]] == [mine[2].id]
    assert first_page.json()["has_more"] is True
    assert [item["id"] for item in first_page.json()["items"] + second_page.json()["items"]] == [
        t.id for t in mine[::-1]
    ]
    assert second_page.json()["has_more"] is False


async def test_my_tasks_is_empty_for_someone_assigned_nothing(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    await make_task(session, project=await make_project(session, owner=owner))

    response = await client.get("/users/me/tasks", headers=await login(client, owner))

    assert response.json() == {"items": [], "next_cursor": None, "has_more": False}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/projects/{project}/tasks"),
        ("GET", "/projects/{project}/tasks"),
        ("GET", "/users/me/tasks"),
        ("GET", "/tasks/{task}"),
        ("PATCH", "/tasks/{task}"),
        ("DELETE", "/tasks/{task}"),
    ],
)
@pytest.mark.parametrize("token", [None, "not-a-jwt"])
async def test_task_endpoints_require_a_valid_token(
    client: AsyncClient, session: AsyncSession, method: str, path: str, token: str | None
) -> None:
    project = await make_project(session, owner=await make_user(session))
    task = await make_task(session, project=project, title="Untouched")
    headers = {} if token is None else bearer(token)

    response = await client.request(
        method,
        path.format(project=project.id, task=task.id),
        json={"title": "Changed"},
        headers=headers,
    )

    assert_problem(response, 401, "not_authenticated" if token is None else "invalid_token")
    assert response.headers["www-authenticate"] == "Bearer"
    await session.refresh(task)
    assert task.title == "Untouched"


async def test_creating_a_task_in_a_project_deleted_meanwhile_answers_404(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    headers = await login(client, owner)
    await race_after_load(
        monkeypatch, app, project_access, Project, client=client, headers=headers, delete=True
    )

    response = await client.post(
        f"/projects/{project.id}/tasks", json={"title": "t"}, headers=headers
    )

    assert_problem(response, 404, "not_found")
