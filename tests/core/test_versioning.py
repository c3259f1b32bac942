"""ETag and If-Match on projects and tasks: stale writes fail with 412 and change nothing."""

import asyncio
from collections import Counter
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.projects import access as project_access
from fasttrack.projects.models import Project
from fasttrack.tasks import service as task_service
from fasttrack.tasks.models import Task
from tests.factories import (
    RecordingEmailSender,
    assert_problem,
    login,
    make_member,
    make_project,
    make_task,
    make_user,
    race_after_load,
)

KINDS = ("project", "task")


@dataclass(frozen=True)
class Resource:
    url: str
    field: str
    headers: dict[str, str]


@pytest.fixture(params=KINDS)
async def resource(
    request: pytest.FixtureRequest, client: AsyncClient, session: AsyncSession
) -> Resource:
    owner = await make_user(session)
    project = await make_project(session, owner=owner, name="original")
    headers = await login(client, owner)
    if request.param == "project":
        return Resource(url=f"/projects/{project.id}", field="name", headers=headers)
    task = await make_task(session, project=project, title="original")
    return Resource(url=f"/tasks/{task.id}", field="title", headers=headers)


async def _patch(
    client: AsyncClient, resource: Resource, value: str, if_match: str | None = None
) -> tuple[int, str | None]:
    headers = dict(resource.headers)
    if if_match is not None:
        headers["If-Match"] = if_match
    response = await client.patch(resource.url, json={resource.field: value}, headers=headers)
    return response.status_code, response.headers.get("etag")


async def _current(client: AsyncClient, resource: Resource) -> tuple[str, str]:
    response = await client.get(resource.url, headers=resource.headers)
    assert response.status_code == 200
    return response.json()[resource.field], response.headers["etag"]


async def test_etag_changes_with_every_applied_patch(
    client: AsyncClient, resource: Resource
) -> None:
    assert await _current(client, resource) == ("original", '"1"')

    assert await _patch(client, resource, "second") == (200, '"2"')
    assert await _patch(client, resource, "third") == (200, '"3"')

    assert await _current(client, resource) == ("third", '"3"')


@pytest.mark.parametrize("if_match", ['"1"', "*", '"7", "1"', ' "1" '])
async def test_a_matching_if_match_applies(
    client: AsyncClient, resource: Resource, if_match: str
) -> None:
    assert await _patch(client, resource, "changed", if_match) == (200, '"2"')
    assert await _current(client, resource) == ("changed", '"2"')


@pytest.mark.parametrize("if_match", ['"2"', 'W/"1"', "1", '"1;"', "", '"01"'])
async def test_a_stale_or_weak_if_match_fails_and_changes_nothing(
    client: AsyncClient, resource: Resource, if_match: str
) -> None:
    headers = {**resource.headers, "If-Match": if_match}

    response = await client.patch(resource.url, json={resource.field: "changed"}, headers=headers)

    assert_problem(response, 412, "precondition_failed")
    assert "etag" not in response.headers
    assert await _current(client, resource) == ("original", '"1"')


async def test_an_etag_read_before_someone_elses_write_is_refused(
    client: AsyncClient, resource: Resource
) -> None:
    _, read_etag = await _current(client, resource)
    assert await _patch(client, resource, "someone else") == (200, '"2"')

    assert (await _patch(client, resource, "mine", read_etag))[0] == 412
    assert (await _patch(client, resource, "mine"))[0] == 200

    assert await _current(client, resource) == ("mine", '"3"')


async def test_a_precondition_is_checked_even_for_an_empty_patch(
    client: AsyncClient, resource: Resource
) -> None:
    headers = {**resource.headers, "If-Match": '"5"'}

    response = await client.patch(resource.url, json={}, headers=headers)

    assert_problem(response, 412, "precondition_failed")


async def test_of_concurrent_patches_with_the_same_if_match_exactly_one_wins(
    client: AsyncClient, resource: Resource
) -> None:
    values = [f"writer {n}" for n in range(10)]

    results = await asyncio.gather(*(_patch(client, resource, v, '"1"') for v in values))

    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 1, 412: 9}
    winner = next(values[n] for n, (status, _) in enumerate(results) if status == 200)
    assert await _current(client, resource) == (winner, '"2"')


async def test_concurrent_patches_without_if_match_all_apply(
    client: AsyncClient, resource: Resource
) -> None:
    values = [f"writer {n}" for n in range(10)]

    results = await asyncio.gather(*(_patch(client, resource, v) for v in values))

    assert [status for status, _ in results] == [200] * 10
    assert sorted(str(etag) for _, etag in results) == sorted(f'"{n}"' for n in range(2, 12))
    value, etag = await _current(client, resource)
    assert value in values
    assert etag == '"11"'


async def test_an_overlong_if_match_is_refused(client: AsyncClient, resource: Resource) -> None:
    headers = {**resource.headers, "If-Match": '"1", ' * 300}

    response = await client.patch(resource.url, json={resource.field: "x"}, headers=headers)

    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == [
        "header",
        "If-Match",
    ]
    assert await _current(client, resource) == ("original", '"1"')


async def test_a_patch_without_if_match_applies_over_a_concurrent_write(
    app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    outbox: RecordingEmailSender,
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    project = await make_project(session, owner=owner, name="Launch")
    await make_member(session, project=project, user=assignee)
    task = await make_task(session, project=project, title="original")
    headers = await login(client, owner)
    await race_after_load(monkeypatch, app, task_service, Task, client=client, headers=headers)

    response = await client.patch(
        f"/tasks/{task.id}",
        json={"assignee_id": assignee.id, "status": "in_progress"},
        headers=headers,
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"3"'
    after = await client.get(f"/tasks/{task.id}", headers=headers)
    assert after.headers["etag"] == '"3"'
    body = after.json()
    assert (body["assignee_id"], body["status"]) == (assignee.id, "in_progress")
    assert body["description"] == "from the other writer"
    assert [(m["To"], m["Subject"]) for m in outbox.messages] == [
        (assignee.email, "[Launch] You were assigned: original")
    ]
    counts = (await client.get(f"/projects/{project.id}", headers=headers)).json()["task_counts"]
    assert counts == {"todo": 0, "in_progress": 1, "done": 0, "total": 1}


async def test_a_project_patch_without_if_match_applies_over_a_concurrent_write(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner, name="original")
    headers = await login(client, owner)
    await race_after_load(monkeypatch, app, project_access, Project, client=client, headers=headers)

    response = await client.patch(f"/projects/{project.id}", json={"name": "mine"}, headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"3"'
    body = (await client.get(f"/projects/{project.id}", headers=headers)).json()
    assert (body["name"], body["description"]) == ("mine", "from the other writer")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_patch_with_if_match_loses_to_a_concurrent_write(
    app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner, name="original")
    task = await make_task(session, project=project, title="original")
    headers = {**await login(client, owner), "If-Match": '"1"'}
    if kind == "task":
        url, field = f"/tasks/{task.id}", "title"
        await race_after_load(monkeypatch, app, task_service, Task, client=client, headers=headers)
    else:
        url, field = f"/projects/{project.id}", "name"
        await race_after_load(
            monkeypatch, app, project_access, Project, client=client, headers=headers
        )

    response = await client.patch(url, json={field: "mine"}, headers=headers)

    assert_problem(response, 412, "precondition_failed")
    after = await client.get(url, headers=headers)
    assert after.json()[field] == "original"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("if_match", [None, '"1"'])
async def test_a_patch_racing_a_delete_answers_404(  # noqa: PLR0917
    app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    if_match: str | None,
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner, name="original")
    task = await make_task(session, project=project, title="original")
    headers = await login(client, owner)
    if if_match is not None:
        headers["If-Match"] = if_match
    if kind == "task":
        url, field, code = f"/tasks/{task.id}", "title", "Task not found"
        await race_after_load(
            monkeypatch, app, task_service, Task, client=client, headers=headers, delete=True
        )
    else:
        url, field, code = f"/projects/{project.id}", "name", "Project not found"
        await race_after_load(
            monkeypatch, app, project_access, Project, client=client, headers=headers, delete=True
        )

    response = await client.patch(url, json={field: "mine"}, headers=headers)

    # RFC 9110 §13.2.1: preconditions are evaluated only for a request that would
    # otherwise succeed, so a deleted resource is a 404 with or without If-Match.
    assert assert_problem(response, 404, "not_found")["detail"] == code
    assert (await client.get(url, headers=headers)).status_code == 404
