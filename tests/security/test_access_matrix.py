"""SPEC §11's permission matrix: who gets what on every route that concerns a project or
anything in it, and on every other route that names a row by id.

Each case is one request, made by each caller on rows built for it alone:

* "admin": an administrator who is not a member of the project;
* "owner", "editor", "viewer": members in that role;
* "assignee": a viewer to whom the task is assigned (they may change its status only);
* "stranger": an active user who is not a member.

Someone who is neither a member nor an admin gets 404 for the project and everything in
it, exactly as if it did not exist; a member whose role does not allow the request gets
403; 404 comes before 403, and 403 before 422 (SPEC §3). A refusal changes nothing.

CASES must name every route with a path id: a new one fails
`test_every_route_with_a_path_id_is_in_the_matrix` until its row is written here.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from httpx import AsyncClient
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment
from fasttrack.notifications.models import Notification, NotificationType
from fasttrack.projects.models import MemberRole, Project
from fasttrack.tasks.models import Task
from fasttrack.users.models import User
from tests.factories import (
    assert_problem,
    login,
    make_admin,
    make_comment,
    make_member,
    make_project,
    make_task,
    make_user,
)

API: Final = "/api/v1"
CALLERS: Final = ("admin", "owner", "editor", "viewer", "assignee", "stranger")
CODES: Final = {403: "forbidden", 404: "not_found", 409: "conflict", 422: "validation_error"}


@dataclass
class Scene:
    """A project of "owner" with every caller in their place, and besides them "member"
    (an editor: the member a route names, and the author of "their" comment) and
    "newcomer" (an active user who is no member yet)."""

    people: dict[str, User]
    project: Project
    task: Task
    comments: dict[str, Comment]
    notification: Notification

    def id_of(self, name: str) -> int:
        user_id = self.people[name].id
        assert user_id is not None
        return user_id


Body = Callable[[Scene], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """A request, and the status each caller gets, in the order of CALLERS."""

    method: str
    path: str
    expected: tuple[int, int, int, int, int, int]
    body: Body | None = None
    # The user whose id fills `{user_id}`: another member, or the caller themselves.
    user: str = "member"
    # The comment `{comment_id}` names: "theirs" (by "member") or "own" (by the caller).
    comment: str = "theirs"
    # For a list: the callers who find the scene's project or task in it.
    listed: frozenset[str] | None = None
    query: str = ""
    # Tells apart the cases of one route.
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}{self.query}" + (f" ({self.name})" if self.name else "")


def _members_and_admin(*extra: str) -> frozenset[str]:
    return frozenset({"admin", "owner", "editor", "viewer", "assignee", *extra})


READ: Final = (200, 200, 200, 200, 200, 404)
EDIT: Final = (200, 200, 200, 403, 403, 404)
MANAGE: Final = (200, 200, 403, 403, 403, 404)

CASES: Final = [
    # --- Projects ----------------------------------------------------------------------
    Case("GET", "/projects", (200,) * 6, listed=_members_and_admin() - {"stranger"}),
    Case(
        "GET",
        "/projects",
        (200,) * 6,
        query="?role=viewer",
        # The role filter asks for the caller's own memberships, administrators' too.
        listed=frozenset({"viewer", "assignee"}),
    ),
    Case("GET", "/projects/{project_id}", READ),
    Case("PATCH", "/projects/{project_id}", MANAGE, body=lambda s: {"name": "Renamed"}),
    Case("DELETE", "/projects/{project_id}", (204, 204, 403, 403, 403, 404)),
    Case(
        "POST",
        "/projects/{project_id}/transfer",
        MANAGE,
        body=lambda s: {"user_id": s.id_of("member")},
    ),
    # --- Tasks -------------------------------------------------------------------------
    Case(
        "POST",
        "/projects/{project_id}/tasks",
        (201, 201, 201, 403, 403, 404),
        body=lambda s: {"title": "New"},
    ),
    Case("GET", "/projects/{project_id}/tasks", READ),
    Case("GET", "/users/me/tasks", (200,) * 6, listed=frozenset({"assignee"})),
    Case("GET", "/tasks/{task_id}", READ),
    Case("PATCH", "/tasks/{task_id}", EDIT, body=lambda s: {"title": "Renamed"}, name="title"),
    # The assignee may change the status of their task, and only that; other viewers not.
    Case(
        "PATCH",
        "/tasks/{task_id}",
        (200, 200, 200, 403, 200, 404),
        body=lambda s: {"status": "in_progress"},
        name="status only",
    ),
    Case(
        "PATCH",
        "/tasks/{task_id}",
        EDIT,
        body=lambda s: {"status": "in_progress", "priority": "high"},
        name="status and more",
    ),
    # Only an active member may be assigned: 422, after 404 and 403.
    Case(
        "PATCH",
        "/tasks/{task_id}",
        (422, 422, 422, 403, 403, 404),
        body=lambda s: {"assignee_id": s.id_of("newcomer")},
        name="a non-member assignee",
    ),
    Case("DELETE", "/tasks/{task_id}", (204, 204, 204, 403, 403, 404)),
    # --- Comments ----------------------------------------------------------------------
    Case(
        "POST",
        "/tasks/{task_id}/comments",
        (201, 201, 201, 201, 201, 404),
        body=lambda s: {"body": "Noted"},
    ),
    Case("GET", "/tasks/{task_id}/comments", READ),
    Case("GET", "/comments/{comment_id}", READ),
    # Every member may delete their own comments; someone else's only an admin.
    Case(
        "DELETE",
        "/comments/{comment_id}",
        (204, 204, 204, 204, 204, 404),
        comment="own",
        name="own",
    ),
    Case("DELETE", "/comments/{comment_id}", (204, 403, 403, 403, 403, 404), name="another's"),
    # --- Members -----------------------------------------------------------------------
    Case("GET", "/projects/{project_id}/members", READ),
    Case(
        "POST",
        "/projects/{project_id}/members",
        (201, 201, 403, 403, 403, 404),
        body=lambda s: {"user_id": s.id_of("newcomer"), "role": "viewer"},
    ),
    Case("GET", "/projects/{project_id}/members/{user_id}", READ),
    Case(
        "PATCH",
        "/projects/{project_id}/members/{user_id}",
        MANAGE,
        body=lambda s: {"role": "viewer"},
    ),
    Case(
        "DELETE",
        "/projects/{project_id}/members/{user_id}",
        (204, 204, 403, 403, 403, 404),
        name="another member",
    ),
    # Leaving: any member for themselves, but not the owner (409); an administrator who is
    # no member has no membership to end (404).
    Case(
        "DELETE",
        "/projects/{project_id}/members/{user_id}",
        (404, 409, 204, 204, 204, 404),
        user="caller",
        name="leaving",
    ),
    # --- Outside projects --------------------------------------------------------------
    # Administration: any user is known to exist, only an admin may act (403).
    Case("GET", "/users/{user_id}", (200, 403, 403, 403, 403, 403)),
    Case(
        "PATCH",
        "/users/{user_id}",
        (200, 403, 403, 403, 403, 403),
        body=lambda s: {"display_name": "Renamed"},
    ),
    # An inbox is its owner's alone (here "member"'s), administrators' included.
    Case("POST", "/notifications/{notification_id}/read", (404,) * 6),
]


def _routes_with_a_path_id(app: FastAPI) -> set[tuple[str, str]]:
    routes = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and "{" in (route.path or ""):
            assert route.path is not None
            assert route.path.startswith(API), route.path
            for method in route.methods or ():
                routes.add((method, route.path.removeprefix(API)))
    return routes


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method.upper(), path.removeprefix(API))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def test_every_route_with_a_path_id_is_in_the_matrix(app: FastAPI) -> None:
    covered = {(case.method, case.path) for case in CASES}
    assert sorted(_routes_with_a_path_id(app) - covered) == [], "routes without a case"
    assert sorted(covered - _routes(app)) == [], "cases for routes that no longer exist"


async def _scene(session: AsyncSession) -> Scene:
    people = {"admin": await make_admin(session)}
    for name in ("owner", "editor", "viewer", "assignee", "stranger", "member", "newcomer"):
        people[name] = await make_user(session)
    project = await make_project(session, owner=people["owner"])
    for name, role in (
        ("editor", MemberRole.editor),
        ("viewer", MemberRole.viewer),
        ("member", MemberRole.editor),
    ):
        await make_member(session, project=project, user=people[name], role=role)
    # The assignee becomes a viewer of the project by being assigned.
    task = await make_task(session, project=project, assignee=people["assignee"])
    comments = {"theirs": await make_comment(session, task=task, author=people["member"])}
    for name in CALLERS:
        comments[name] = await make_comment(session, task=task, author=people[name])
    member_id = people["member"].id
    assert member_id is not None
    notification = Notification(user_id=member_id, type=NotificationType.task_assigned, data={})
    session.add(notification)
    await session.commit()
    return Scene(people, project, task, comments, notification)


async def _rows(app: FastAPI) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, on a connection of its own (no stale snapshot)."""
    async with app.state.database.engine.connect() as connection:
        return {
            table.name: sorted((await connection.execute(sa.select(table))).all(), key=str)
            for table in SQLModel.metadata.sorted_tables
        }


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_the_access_matrix(
    app: FastAPI, client: AsyncClient, session: AsyncSession, case: Case, caller: str
) -> None:
    scene = await _scene(session)
    comment = scene.comments[caller if case.comment == "own" else "theirs"]
    url = case.path.format(
        project_id=scene.project.id,
        task_id=scene.task.id,
        comment_id=comment.id,
        user_id=scene.id_of(caller if case.user == "caller" else case.user),
        notification_id=scene.notification.id,
    )
    expected = case.expected[CALLERS.index(caller)]
    body = case.body(scene) if case.body else None
    headers = await login(client, scene.people[caller])
    before = await _rows(app)

    response = await client.request(case.method, url + case.query, headers=headers, json=body)

    if expected >= 400:
        assert_problem(response, expected, CODES[expected])
        # A refusal changes nothing (login only adds a session row, before the snapshot).
        assert await _rows(app) == before
        return
    assert response.status_code == expected, response.text
    if case.listed is not None:
        found = {item["id"] for item in response.json()["items"]}
        row = scene.task.id if case.path.endswith("/tasks") else scene.project.id
        assert (row in found) == (caller in case.listed), found
