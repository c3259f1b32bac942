"""Who is told what (SPEC §7): inbox rows in the change's transaction, then live pushes."""

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from httpx_ws import AsyncWebSocketSession
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.projects.models import MemberRole
from fasttrack.tasks import service as task_service
from fasttrack.tasks.models import Task
from fasttrack.users.models import User
from tests.factories import (
    assert_problem,
    bearer,
    login,
    make_admin,
    make_member,
    make_project,
    make_task,
    make_user,
    race_after_load,
    token_pair,
)
from tests.notifications.sockets import (
    assert_nothing_pending,
    open_socket,
    receive_notifications,
    ws_client,
)

CAST = ("owner", "assignee", "admin", "newcomer", "stranger")


@dataclass
class Scene:
    people: dict[str, User]
    task: Task
    project_name: str


Action = Callable[[AsyncClient, Scene, dict[str, str]], Awaitable[Response]]


async def _inbox(client: AsyncClient, user: User) -> list[dict[str, Any]]:
    response = await client.get("/notifications", headers=await login(client, user))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _person(user: User) -> dict[str, Any]:
    return {"id": user.id, "display_name": user.display_name}


async def _create_assigned(client: AsyncClient, scene: Scene, headers: dict[str, str]) -> Response:
    body = {"title": "Book the venue", "assignee_id": scene.people["newcomer"].id}
    return await client.post(f"/projects/{scene.task.project_id}/tasks", json=body, headers=headers)


async def _create_self_assigned(
    client: AsyncClient, scene: Scene, headers: dict[str, str]
) -> Response:
    body = {"title": "Book the venue", "assignee_id": scene.people["owner"].id}
    return await client.post(f"/projects/{scene.task.project_id}/tasks", json=body, headers=headers)


async def _reassign(client: AsyncClient, scene: Scene, headers: dict[str, str]) -> Response:
    body = {"assignee_id": scene.people["newcomer"].id}
    return await client.patch(f"/tasks/{scene.task.id}", json=body, headers=headers)


async def _start(client: AsyncClient, scene: Scene, headers: dict[str, str]) -> Response:
    return await client.patch(
        f"/tasks/{scene.task.id}", json={"status": "in_progress"}, headers=headers
    )


async def _comment(client: AsyncClient, scene: Scene, headers: dict[str, str]) -> Response:
    return await client.post(
        f"/tasks/{scene.task.id}/comments", json={"body": "Done?"}, headers=headers
    )


async def _add_member(client: AsyncClient, scene: Scene, headers: dict[str, str]) -> Response:
    body = {"user_id": scene.people["stranger"].id, "role": "viewer"}
    return await client.post(
        f"/projects/{scene.task.project_id}/members", json=body, headers=headers
    )


async def _remove_newcomer(client: AsyncClient, scene: Scene, headers: dict[str, str]) -> Response:
    return await client.delete(
        f"/projects/{scene.task.project_id}/members/{scene.people['newcomer'].id}",
        headers=headers,
    )


def _expected_data(kind: str, scene: Scene, actor: User, response: Response) -> dict[str, Any]:
    if kind == "member_added":
        return {
            "project_id": scene.task.project_id,
            "project_name": scene.project_name,
            "role": "viewer",
            "added_by": _person(actor),
        }
    if kind == "member_removed":
        return {
            "project_id": scene.task.project_id,
            "project_name": scene.project_name,
            "removed_by": _person(actor),
        }
    body = response.json()
    if kind == "task_assigned":
        return {
            "task_id": body["id"],
            "task_title": body["title"],
            "project_id": scene.task.project_id,
            "project_name": scene.project_name,
            "assigned_by": _person(actor),
        }
    if kind == "status_changed":
        return {
            "task_id": scene.task.id,
            "task_title": scene.task.title,
            "old": "todo",
            "new": "in_progress",
            "changed_by": _person(actor),
        }
    return {
        "task_id": scene.task.id,
        "comment_id": body["id"],
        "author_id": actor.id,
        "author_name": actor.display_name,
    }


EVENTS = [
    pytest.param(_create_assigned, "owner", "task_assigned", {"newcomer"}, id="create-assigned"),
    pytest.param(_create_self_assigned, "owner", "task_assigned", set(), id="self-assigned"),
    pytest.param(_reassign, "admin", "task_assigned", {"newcomer"}, id="reassigned"),
    pytest.param(_start, "assignee", "status_changed", {"owner"}, id="status-by-assignee"),
    pytest.param(_start, "owner", "status_changed", {"assignee"}, id="status-by-owner"),
    pytest.param(_start, "admin", "status_changed", {"owner", "assignee"}, id="status-by-admin"),
    pytest.param(_comment, "owner", "comment_added", {"assignee"}, id="comment-by-owner"),
    pytest.param(_comment, "assignee", "comment_added", {"owner"}, id="comment-by-assignee"),
    pytest.param(_comment, "admin", "comment_added", {"owner", "assignee"}, id="comment-by-admin"),
    pytest.param(_add_member, "owner", "member_added", {"stranger"}, id="member-added"),
    pytest.param(_remove_newcomer, "admin", "member_removed", {"newcomer"}, id="member-removed"),
    # Leaving is caused by the one who leaves: nobody is told.
    pytest.param(_remove_newcomer, "newcomer", "member_removed", set(), id="member-left"),
]


@pytest.mark.parametrize(("action", "actor", "kind", "recipients"), EVENTS)
async def test_each_event_reaches_its_recipients_live_and_never_the_actor(  # noqa: PLR0917
    client: AsyncClient,
    app: FastAPI,
    session: AsyncSession,
    action: Action,
    actor: str,
    kind: str,
    recipients: set[str],
) -> None:
    people = {name: await (make_admin if name == "admin" else make_user)(session) for name in CAST}
    project = await make_project(session, owner=people["owner"])
    task = await make_task(session, project=project, assignee=people["assignee"])
    # A newcomer to the task, not to the project: only a member can be assigned.
    await make_member(session, project=project, user=people["newcomer"], role=MemberRole.viewer)
    scene = Scene(people=people, task=task, project_name=project.name)
    tokens = {
        name: (await token_pair(client, user))["access_token"] for name, user in people.items()
    }

    async with ws_client(app) as ws_http, AsyncExitStack() as stack:
        sockets: dict[str, AsyncWebSocketSession] = {
            name: await stack.enter_async_context(open_socket(ws_http, tokens[name]))
            for name in CAST
        }
        response = await action(client, scene, bearer(tokens[actor]))
        assert response.status_code in (200, 201, 204), response.text

        expected = _expected_data(kind, scene, people[actor], response)
        for name in sorted(recipients):
            (message,) = await receive_notifications(sockets[name], 1)
            assert message.keys() == {"type", "id", "data", "timestamp"}
            assert message["type"] == kind
            assert message["data"] == expected
            assert datetime.fromisoformat(message["timestamp"]).utcoffset() is not None
            # Stored before it was pushed: the inbox already holds the same notification.
            inbox = await _inbox(client, people[name])
            assert [(n["id"], n["type"], n["data"]) for n in inbox] == [
                (message["id"], kind, expected)
            ]
        # Every push of this change happened before its recipients heard of it.
        for name in CAST:
            await assert_nothing_pending(sockets[name])
    for name in set(CAST) - recipients:
        assert await _inbox(client, people[name]) == []


async def test_every_connection_of_a_user_receives_the_notification(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    project = await make_project(session, owner=owner)
    await make_member(session, project=project, user=assignee, role=MemberRole.viewer)
    phone = (await token_pair(client, assignee))["access_token"]
    laptop = (await token_pair(client, assignee))["access_token"]
    async with (
        ws_client(app) as ws_http,
        open_socket(ws_http, phone) as first,
        open_socket(ws_http, laptop) as second,
        open_socket(ws_http, phone) as third,
    ):
        response = await client.post(
            f"/projects/{project.id}/tasks",
            json={"title": "Print", "assignee_id": assignee.id},
            headers=await login(client, owner),
        )
        assert response.status_code == 201
        received = [(await receive_notifications(ws, 1))[0] for ws in (first, second, third)]

    assert len({message["id"] for message in received}) == 1
    assert {message["type"] for message in received} == {"task_assigned"}


async def test_a_change_that_fails_to_commit_leaves_no_notification(
    client: AsyncClient,
    app: FastAPI,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    project = await make_project(session, owner=owner)
    await make_member(session, project=project, user=assignee, role=MemberRole.viewer)
    task = await make_task(session, project=project)
    token = (await token_pair(client, assignee))["access_token"]
    headers = {**await login(client, owner), "If-Match": '"1"'}
    # Another writer changes the task after the request checked If-Match: the update's
    # commit fails, and the notification added in the same transaction must go with it.
    await race_after_load(monkeypatch, app, task_service, Task, client=client, headers=headers)

    async with ws_client(app) as ws_http, open_socket(ws_http, token) as ws:
        response = await client.patch(
            f"/tasks/{task.id}", json={"assignee_id": assignee.id}, headers=headers
        )
        assert_problem(response, 412, "precondition_failed")
        await assert_nothing_pending(ws)

    assert await _inbox(client, assignee) == []


async def test_an_invalid_transition_notifies_nobody(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    project = await make_project(session, owner=owner)
    await make_member(session, project=project, user=assignee, role=MemberRole.viewer)
    task = await make_task(session, project=project)
    token = (await token_pair(client, assignee))["access_token"]

    async with ws_client(app) as ws_http, open_socket(ws_http, token) as ws:
        response = await client.patch(
            f"/tasks/{task.id}",
            json={"assignee_id": assignee.id, "status": "done"},
            headers=await login(client, owner),
        )
        assert_problem(response, 409, "invalid_transition")
        await assert_nothing_pending(ws)

    assert await _inbox(client, assignee) == []


async def test_a_failing_push_never_fails_the_change(
    app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    project = await make_project(session, owner=owner)
    await make_member(session, project=project, user=assignee, role=MemberRole.viewer)

    async def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("the broker is gone")

    monkeypatch.setattr(app.state.hub._broker, "publish", broken)
    response = await client.post(
        f"/projects/{project.id}/tasks",
        json={"title": "Print", "assignee_id": assignee.id},
        headers=await login(client, owner),
    )

    assert response.status_code == 201, response.text
    assert [n["type"] for n in await _inbox(client, assignee)] == ["task_assigned"]
    assert "publishing a notifications event failed" in caplog.text
