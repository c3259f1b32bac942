"""Who gets what on every route that names a row by id.

MATRIX has one entry per such route of the app; a new route with a path id and no entry
fails `test_every_route_with_a_path_id_is_in_the_matrix`. Someone who may not see a row
gets 404, exactly as if it did not exist; 403 only where they can see it but not do this
(SPEC §3, §5); an administrator gets through, except to another user's inbox.
"""

from dataclasses import dataclass
from typing import Any, Final

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from httpx import AsyncClient
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.notifications.models import Notification, NotificationType
from tests.factories import login, make_assigned_task, make_comment

API: Final = "/api/v1"


@dataclass(frozen=True)
class Entry:
    """The request (JSON body, if any) and the status each caller gets."""

    stranger: int
    assignee: int
    admin: int
    json: dict[str, Any] | None = None


# Scene: the task's project belongs to "owner", the task is assigned to "assignee", the
# comment is the owner's, the notification is in the owner's inbox; "user_id" is the owner.
MATRIX: Final[dict[tuple[str, str], Entry]] = {
    ("POST", "/projects/{project_id}/tasks"): Entry(404, 404, 201, json={"title": "New"}),
    ("GET", "/projects/{project_id}/tasks"): Entry(404, 404, 200),
    ("GET", "/projects/{project_id}"): Entry(404, 404, 200),
    ("PATCH", "/projects/{project_id}"): Entry(404, 404, 200, json={"name": "Renamed"}),
    ("DELETE", "/projects/{project_id}"): Entry(404, 404, 204),
    ("GET", "/tasks/{task_id}"): Entry(404, 200, 200),
    # An assignee may change the status only.
    ("PATCH", "/tasks/{task_id}"): Entry(404, 403, 200, json={"title": "Renamed"}),
    ("DELETE", "/tasks/{task_id}"): Entry(404, 403, 204),
    ("POST", "/tasks/{task_id}/comments"): Entry(404, 201, 201, json={"body": "Noted"}),
    ("GET", "/tasks/{task_id}/comments"): Entry(404, 200, 200),
    ("GET", "/comments/{comment_id}"): Entry(404, 200, 200),
    # The assignee sees the owner's comment but may not delete it.
    ("DELETE", "/comments/{comment_id}"): Entry(404, 403, 204),
    # Administration: any user is known to exist, only an admin may act (403).
    ("GET", "/users/{user_id}"): Entry(403, 403, 200),
    ("PATCH", "/users/{user_id}"): Entry(403, 403, 200, json={"display_name": "Renamed"}),
    # An inbox is its owner's alone, administrators included.
    ("POST", "/notifications/{notification_id}/read"): Entry(404, 404, 404),
}


def _routes_with_a_path_id(app: FastAPI) -> set[tuple[str, str]]:
    routes = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and "{" in (route.path or ""):
            assert route.path is not None
            assert route.path.startswith(API), route.path
            for method in route.methods or ():
                routes.add((method, route.path.removeprefix(API)))
    return routes


def test_every_route_with_a_path_id_is_in_the_matrix(app: FastAPI) -> None:
    routes = _routes_with_a_path_id(app)
    assert sorted(routes - MATRIX.keys()) == [], "routes without an entry in MATRIX"
    assert sorted(MATRIX.keys() - routes) == [], "entries for routes that no longer exist"


async def _rows(app: FastAPI) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, on a connection of its own (no stale snapshot)."""
    async with app.state.database.engine.connect() as connection:
        return {
            table.name: sorted((await connection.execute(sa.select(table))).all(), key=str)
            for table in SQLModel.metadata.sorted_tables
        }


@pytest.mark.parametrize("caller", ["stranger", "assignee", "admin"])
@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
async def test_the_access_matrix(
    app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    *,
    method: str,
    path: str,
    caller: str,
) -> None:
    people, task = await make_assigned_task(session)
    comment = await make_comment(session, task=task, author=people["owner"])
    assert people["owner"].id is not None
    notification = Notification(
        user_id=people["owner"].id, type=NotificationType.task_assigned, data={}
    )
    session.add(notification)
    await session.commit()
    url = path.format(
        project_id=task.project_id,
        task_id=task.id,
        comment_id=comment.id,
        user_id=people["owner"].id,
        notification_id=notification.id,
    )
    entry = MATRIX[method, path]
    expected = getattr(entry, caller)
    headers = await login(client, people[caller])
    before = await _rows(app)

    response = await client.request(method, url, headers=headers, json=entry.json)

    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        # A refusal changes nothing (login only adds a session row, before the snapshot).
        assert await _rows(app) == before
