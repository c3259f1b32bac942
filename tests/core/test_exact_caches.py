"""The validated caches through the API: whatever a request changes, the very next request
sees, although what it changed was served from a cache just before.

Each test first makes the cache warm and proves it (the entry is there, and a repeat
request runs no statement for it), then changes something and looks again at once.
"""

from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.users.models import User
from tests.factories import (
    DEFAULT_PASSWORD,
    assert_problem,
    bearer,
    claims_of,
    login,
    make_admin,
    make_project,
    make_task,
    make_user,
    token_pair,
)
from tests.statements import counting_statements


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def _warm_principal(client: AsyncClient, app: FastAPI, headers: dict[str, str]) -> None:
    """Check the token once, then prove the next check is served from the cache."""
    assert (await client.get("/users/me", headers=headers)).status_code == 200
    with counting_statements(app) as statements:
        assert (await client.get("/users/me", headers=headers)).status_code == 200
    assert statements.seen == []
    assert claims_of(_token(headers))["jti"] in app.state.principals


async def _warm_task(
    client: AsyncClient, app: FastAPI, task_id: int, headers: dict[str, str]
) -> None:
    await _warm_principal(client, app, headers)
    # A task's first read tells the cache its project, the second is stored.
    for _ in range(2):
        assert (await client.get(f"/tasks/{task_id}", headers=headers)).status_code == 200
    with counting_statements(app) as statements:
        assert (await client.get(f"/tasks/{task_id}", headers=headers)).status_code == 200
    assert statements.seen == []
    assert task_id in app.state.task_cache


async def _warm_access(
    client: AsyncClient, app: FastAPI, project_id: int, user: User, headers: dict[str, str]
) -> None:
    """A project's task list loads the caller's access to the project: both come from the
    caches next."""
    await _warm_principal(client, app, headers)
    path = f"/projects/{project_id}/tasks"
    assert (await client.get(path, headers=headers)).status_code == 200
    with counting_statements(app) as statements:
        assert (await client.get(path, headers=headers)).status_code == 200
    assert len(statements) == 0, statements.seen
    assert (project_id, user.id) in app.state.project_access
    assert len(app.state.task_pages) > 0


async def _me(client: AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/users/me", headers=headers)
    assert response.status_code == 200, response.text
    me: dict[str, Any] = response.json()
    return me


# --- Who is calling -----------------------------------------------------------------------


async def test_logout_refuses_the_cached_token_at_once(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    headers = await login(client, await make_user(session))
    await _warm_principal(client, app, headers)

    assert (await client.post("/auth/logout", headers=headers)).status_code == 204

    assert_problem(await client.get("/users/me", headers=headers), 401, "token_revoked")


async def test_logout_all_refuses_every_cached_token_of_the_user_at_once(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    user, bystander = await make_user(session), await make_user(session)
    laptop, phone = await login(client, user), await login(client, user)
    others = await login(client, bystander)
    for headers in (laptop, phone, others):
        await _warm_principal(client, app, headers)

    assert (await client.post("/auth/logout-all", headers=laptop)).status_code == 204

    assert_problem(await client.get("/users/me", headers=phone), 401, "token_revoked")
    assert_problem(await client.get("/users/me", headers=laptop), 401, "token_revoked")
    assert (await client.get("/users/me", headers=others)).status_code == 200


async def test_a_password_change_refuses_the_other_cached_sessions_at_once(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    user = await make_user(session)
    laptop, phone = await login(client, user), await login(client, user)
    await _warm_principal(client, app, laptop)
    await _warm_principal(client, app, phone)

    body = {"password": "a brand new password", "current_password": DEFAULT_PASSWORD}
    assert (await client.patch("/users/me", json=body, headers=laptop)).status_code == 200

    assert_problem(await client.get("/users/me", headers=phone), 401, "token_revoked")
    assert (await client.get("/users/me", headers=laptop)).status_code == 200  # kept


async def test_deactivation_refuses_the_cached_token_at_once(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    admin, user = await make_admin(session), await make_user(session)
    admin_headers, headers = await login(client, admin), await login(client, user)
    await _warm_principal(client, app, headers)

    response = await client.patch(
        f"/users/{user.id}", json={"is_active": False}, headers=admin_headers
    )
    assert response.status_code == 200, response.text

    assert_problem(await client.get("/users/me", headers=headers), 401, "invalid_token")


async def test_a_promotion_applies_to_the_cached_token_at_once(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    admin, user = await make_admin(session), await make_user(session)
    admin_headers, headers = await login(client, admin), await login(client, user)
    await _warm_principal(client, app, headers)
    assert_problem(await client.get("/users", headers=headers), 403, "forbidden")

    response = await client.patch(
        f"/users/{user.id}", json={"role": "admin"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text

    assert (await client.get("/users", headers=headers)).status_code == 200
    assert (await _me(client, headers))["role"] == "admin"


async def test_a_demotion_applies_to_the_cached_token_and_cached_rows_at_once(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    first, second = await make_admin(session), await make_admin(session)
    owner = await make_user(session)
    task = await make_task(session, project=await make_project(session, owner=owner))
    assert task.id is not None
    first_headers, headers = await login(client, first), await login(client, second)
    # The demoted admin saw someone else's task through the caches just before.
    await _warm_task(client, app, task.id, headers)

    response = await client.patch(
        f"/users/{second.id}", json={"role": "user"}, headers=first_headers
    )
    assert response.status_code == 200, response.text

    assert_problem(await client.get("/users", headers=headers), 403, "forbidden")
    assert_problem(await client.get(f"/tasks/{task.id}", headers=headers), 404, "not_found")
    assert (await _me(client, headers))["role"] == "user"


@pytest.mark.parametrize("by", ["the user", "an admin"])
async def test_a_new_display_name_is_seen_by_every_cached_token_at_once(
    client: AsyncClient, session: AsyncSession, app: FastAPI, by: str
) -> None:
    user = await make_user(session, display_name="Before")
    laptop, phone = await login(client, user), await login(client, user)
    await _warm_principal(client, app, laptop)
    await _warm_principal(client, app, phone)

    if by == "the user":
        changer, path = laptop, "/users/me"
    else:
        changer, path = await login(client, await make_admin(session)), f"/users/{user.id}"
    response = await client.patch(path, json={"display_name": "After"}, headers=changer)
    assert response.status_code == 200, response.text

    assert (await _me(client, phone))["display_name"] == "After"
    assert (await _me(client, laptop))["display_name"] == "After"


async def test_refresh_token_reuse_refuses_the_cached_access_tokens_of_its_session_at_once(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    user = await make_user(session)
    first = await token_pair(client, user)
    rotated = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    other_session = await login(client, user)
    for access in (first["access_token"], second["access_token"]):
        await _warm_principal(client, app, bearer(access))
    await _warm_principal(client, app, other_session)

    reused = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(reused, 401, "token_revoked")

    for access in (first["access_token"], second["access_token"]):
        assert_problem(await client.get("/users/me", headers=bearer(access)), 401, "token_revoked")
    assert (await client.get("/users/me", headers=other_session)).status_code == 200


# --- Tasks and projects -------------------------------------------------------------------


async def _people_and_task(
    client: AsyncClient, session: AsyncSession
) -> tuple[dict[str, dict[str, str]], dict[str, User], int, int]:
    owner, assignee, other = [await make_user(session) for _ in range(3)]
    project = await make_project(session, owner=owner)
    task = await make_task(session, project=project, assignee=assignee, title="Before")
    assert project.id is not None
    assert task.id is not None
    users = {"owner": owner, "assignee": assignee, "other": other}
    headers = {name: await login(client, user) for name, user in users.items()}
    return headers, users, project.id, task.id


async def test_a_task_change_is_seen_by_the_next_read_of_a_cached_task(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    headers, users, project_id, task_id = await _people_and_task(client, session)
    await _warm_task(client, app, task_id, headers["owner"])
    await _warm_task(client, app, task_id, headers["assignee"])
    await _warm_access(client, app, project_id, users["owner"], headers["owner"])

    response = await client.patch(
        f"/tasks/{task_id}", json={"title": "After", "priority": "high"}, headers=headers["owner"]
    )
    assert response.status_code == 200, response.text
    etag = response.headers["etag"]

    for viewer in ("owner", "assignee"):
        seen = await client.get(f"/tasks/{task_id}", headers=headers[viewer])
        assert (seen.json()["title"], seen.json()["priority"]) == ("After", "high")
        assert seen.headers["etag"] == etag
    listed = await client.get(f"/projects/{project_id}/tasks", headers=headers["owner"])
    assert [item["title"] for item in listed.json()["items"]] == ["After"]


async def test_a_membership_change_moves_who_may_see_a_cached_task_at_once(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    headers, users, project_id, task_id = await _people_and_task(client, session)
    await _warm_task(client, app, task_id, headers["assignee"])
    assert_problem(
        await client.get(f"/tasks/{task_id}", headers=headers["other"]), 404, "not_found"
    )
    members = f"/projects/{project_id}/members"

    added = await client.post(
        members, json={"user_id": users["other"].id, "role": "viewer"}, headers=headers["owner"]
    )
    assert added.status_code == 201, added.text
    removed = await client.delete(f"{members}/{users['assignee'].id}", headers=headers["owner"])
    assert removed.status_code == 204, removed.text

    assert (await client.get(f"/tasks/{task_id}", headers=headers["other"])).status_code == 200
    previous = await client.get(f"/tasks/{task_id}", headers=headers["assignee"])
    assert_problem(previous, 404, "not_found")


async def test_a_former_assignee_still_sees_a_cached_task_as_a_member_after_a_reassignment(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    headers, users, project_id, task_id = await _people_and_task(client, session)
    await _warm_task(client, app, task_id, headers["assignee"])
    added = await client.post(
        f"/projects/{project_id}/members",
        json={"user_id": users["other"].id, "role": "viewer"},
        headers=headers["owner"],
    )
    assert added.status_code == 201, added.text

    body = {"assignee_id": users["other"].id}
    response = await client.patch(f"/tasks/{task_id}", json=body, headers=headers["owner"])
    assert response.status_code == 200, response.text

    for viewer in ("other", "assignee"):
        seen = await client.get(f"/tasks/{task_id}", headers=headers[viewer])
        assert seen.status_code == 200, seen.text
        assert seen.json()["assignee_id"] == users["other"].id
    # No longer the assignee, the viewer may not change the status any more.
    status = {"status": "done"}
    refused = await client.patch(f"/tasks/{task_id}", json=status, headers=headers["assignee"])
    assert_problem(refused, 403, "forbidden")


async def test_a_task_deletion_is_seen_by_the_next_read_of_a_cached_task(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    headers, users, project_id, task_id = await _people_and_task(client, session)
    await _warm_task(client, app, task_id, headers["owner"])
    await _warm_task(client, app, task_id, headers["assignee"])
    await _warm_access(client, app, project_id, users["owner"], headers["owner"])

    deleted = await client.delete(f"/tasks/{task_id}", headers=headers["owner"])
    assert deleted.status_code == 204

    for viewer in ("owner", "assignee"):
        gone = await client.get(f"/tasks/{task_id}", headers=headers[viewer])
        assert_problem(gone, 404, "not_found")
    listed = await client.get(f"/projects/{project_id}/tasks", headers=headers["owner"])
    assert listed.json()["items"] == []
    project = await client.get(f"/projects/{project_id}", headers=headers["owner"])
    assert project.json()["task_counts"]["total"] == 0


async def test_a_project_rename_is_seen_by_the_next_request_that_uses_its_cached_access(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    headers, users, project_id, _ = await _people_and_task(client, session)
    await _warm_access(client, app, project_id, users["owner"], headers["owner"])

    response = await client.patch(
        f"/projects/{project_id}", json={"name": "Renamed"}, headers=headers["owner"]
    )
    assert response.status_code == 200, response.text

    assert (await client.get(f"/projects/{project_id}", headers=headers["owner"])).json()[
        "name"
    ] == "Renamed"
    # Creating a task loads the caller's access to the project, and with it the project's
    # name, which goes into the notification.
    body = {"title": "New", "assignee_id": users["assignee"].id}
    created = await client.post(
        f"/projects/{project_id}/tasks", json=body, headers=headers["owner"]
    )
    assert created.status_code == 201, created.text
    inbox = (await client.get("/notifications", headers=headers["assignee"])).json()["items"]
    assert [item["data"]["project_name"] for item in inbox] == ["Renamed"]


async def test_a_project_deletion_is_seen_by_the_next_read_of_its_cached_rows(
    client: AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    headers, users, project_id, task_id = await _people_and_task(client, session)
    await _warm_access(client, app, project_id, users["owner"], headers["owner"])
    await _warm_task(client, app, task_id, headers["owner"])
    await _warm_task(client, app, task_id, headers["assignee"])

    deleted = await client.delete(f"/projects/{project_id}", headers=headers["owner"])
    assert deleted.status_code == 204

    owner = headers["owner"]
    for path in (f"/projects/{project_id}", f"/projects/{project_id}/tasks"):
        assert_problem(await client.get(path, headers=owner), 404, "not_found")
    for viewer in ("owner", "assignee"):
        gone = await client.get(f"/tasks/{task_id}", headers=headers[viewer])
        assert_problem(gone, 404, "not_found")
    created = await client.post(
        f"/projects/{project_id}/tasks", json={"title": "Orphan"}, headers=owner
    )
    assert_problem(created, 404, "not_found")
