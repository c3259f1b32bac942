"""The task status workflow and completed_at."""

from datetime import datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.tasks.models import TaskStatus
from tests.factories import assert_problem, login, make_project, make_task, make_user


@pytest.mark.parametrize(
    ("start", "target", "expected"),
    [
        ("todo", "in_progress", 200),
        ("in_progress", "todo", 200),
        ("in_progress", "done", 200),
        ("done", "in_progress", 200),
        ("todo", "done", 409),
        ("done", "todo", 409),
        ("todo", "todo", 200),
    ],
)
async def test_status_moves_follow_the_workflow(
    client: AsyncClient, session: AsyncSession, start: str, target: str, expected: int
) -> None:
    owner = await make_user(session)
    task = await make_task(
        session, project=await make_project(session, owner=owner), status=TaskStatus(start)
    )
    headers = await login(client, owner)

    response = await client.patch(f"/tasks/{task.id}", json={"status": target}, headers=headers)

    assert response.status_code == expected
    after = (await client.get(f"/tasks/{task.id}", headers=headers)).json()
    if expected == 409:
        assert response.json()["code"] == "invalid_transition"
        assert after["status"] == start
        assert response.headers["content-type"] == "application/problem+json"
    else:
        assert after["status"] == target
        assert (after["completed_at"] is not None) == (target == "done")


async def test_a_bad_transition_among_other_changes_changes_nothing(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    task = await make_task(session, project=await make_project(session, owner=owner))
    headers = await login(client, owner)
    before = (await client.get(f"/tasks/{task.id}", headers=headers)).json()

    response = await client.patch(
        f"/tasks/{task.id}",
        json={
            "title": "New title",
            "description": "New text",
            "priority": "high",
            "assignee_id": assignee.id,
            "status": "done",
        },
        headers=headers,
    )

    assert_problem(response, 409, "invalid_transition")
    after = await client.get(f"/tasks/{task.id}", headers=headers)
    assert after.json() == before
    assert after.headers["etag"] == '"1"'
    assert (await client.get("/users/me/tasks", headers=await login(client, assignee))).json()[
        "items"
    ] == []


async def test_completed_at_is_set_on_done_and_cleared_on_leaving(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    task = await make_task(session, project=await make_project(session, owner=owner))
    headers = await login(client, owner)

    async def move(status: str) -> dict[str, Any]:
        response = await client.patch(f"/tasks/{task.id}", json={"status": status}, headers=headers)
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        if body["completed_at"] is not None:
            body["completed_at"] = datetime.fromisoformat(body["completed_at"])
        body["updated_at"] = datetime.fromisoformat(body["updated_at"])
        return body

    started = await move("in_progress")
    done = await move("done")
    reopened = await move("in_progress")

    assert started["completed_at"] is None
    assert done["completed_at"] is not None
    assert started["updated_at"] < done["completed_at"] <= done["updated_at"]
    assert reopened["completed_at"] is None
    assert (await client.get(f"/tasks/{task.id}", headers=headers)).json()["completed_at"] is None


@pytest.mark.parametrize("status", list(TaskStatus))
async def test_setting_the_same_status_again_is_a_no_op(
    client: AsyncClient, session: AsyncSession, status: TaskStatus
) -> None:
    owner = await make_user(session)
    task = await make_task(session, project=await make_project(session, owner=owner), status=status)
    headers = await login(client, owner)
    before = await client.get(f"/tasks/{task.id}", headers=headers)

    response = await client.patch(
        f"/tasks/{task.id}", json={"status": status.value}, headers=headers
    )

    assert response.status_code == 200
    assert response.headers["etag"] == before.headers["etag"] == '"1"'
    assert response.json() == before.json()
    after = await client.get(f"/tasks/{task.id}", headers=headers)
    assert after.json()["updated_at"] == before.json()["updated_at"]
