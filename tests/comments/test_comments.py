"""Comments: every member of a task's project may comment and read; authors and admins
delete."""

from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.tasks import service as task_service
from fasttrack.tasks.models import Task
from tests.factories import (
    assert_problem,
    bearer,
    login,
    make_assigned_task,
    make_comment,
    make_project,
    make_task,
    make_user,
    race_after_load,
)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 201), ("assignee", 201), ("admin", 201), ("stranger", 404)],
)
async def test_create_comment_by_role(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)
    headers = await login(client, people[role])

    response = await client.post(
        f"/tasks/{task.id}/comments", json={"body": "Looks good"}, headers=headers
    )

    listed = await client.get(
        f"/tasks/{task.id}/comments", headers=await login(client, people["owner"])
    )
    if expected == 201:
        assert response.status_code == 201
        body = response.json()
        assert (body["task_id"], body["author_id"], body["body"]) == (
            task.id,
            people[role].id,
            "Looks good",
        )
        assert body["created_at"].endswith(("Z", "+00:00"))
        location = response.headers["location"]
        assert location.endswith(f"/api/v1/comments/{body['id']}")
        again = await client.get(location, headers=headers)
        assert again.status_code == 200
        assert again.json() == body
        assert listed.json()["items"] == [body]
    else:
        assert_problem(response, 404, "not_found")
        assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 200), ("assignee", 200), ("admin", 200), ("stranger", 404)],
)
async def test_list_comments_oldest_first_by_role(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)
    comments = [
        await make_comment(session, task=task, author=people[author], body=author)
        for author in ("owner", "assignee", "owner")
    ]
    other_task = await make_task(
        session, project=await make_project(session, owner=people["owner"])
    )
    await make_comment(session, task=other_task, author=people["owner"])

    response = await client.get(
        f"/tasks/{task.id}/comments", headers=await login(client, people[role])
    )

    if expected == 200:
        body = response.json()
        assert [item["id"] for item in body["items"]] == [comment.id for comment in comments]
        assert [item["body"] for item in body["items"]] == ["owner", "assignee", "owner"]
        assert (body["has_more"], body["next_cursor"]) == (False, None)
    else:
        assert_problem(response, 404, "not_found")


@pytest.mark.parametrize(
    ("role", "expected"),
    [("owner", 200), ("assignee", 200), ("admin", 200), ("stranger", 404)],
)
async def test_get_comment_visibility(
    client: AsyncClient, session: AsyncSession, role: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)
    comment = await make_comment(session, task=task, author=people["owner"], body="Hi")

    response = await client.get(
        f"/comments/{comment.id}", headers=await login(client, people[role])
    )

    if expected == 200:
        assert response.json()["body"] == "Hi"
    else:
        assert_problem(response, 404, "not_found")


async def test_a_former_assignee_still_reads_and_deletes_their_comment_as_a_member(
    client: AsyncClient, session: AsyncSession
) -> None:
    people, task = await make_assigned_task(session)
    comment = await make_comment(session, task=task, author=people["assignee"])
    owner_headers = await login(client, people["owner"])
    assignee_headers = await login(client, people["assignee"])

    unassigned = await client.patch(
        f"/tasks/{task.id}", json={"assignee_id": None}, headers=owner_headers
    )

    assert unassigned.status_code == 200
    # Unassigning leaves the membership (a viewer's): the project is still theirs to see.
    shown = await client.get(f"/comments/{comment.id}", headers=assignee_headers)
    assert shown.status_code == 200
    listed = await client.get(f"/tasks/{task.id}/comments", headers=assignee_headers)
    assert [item["id"] for item in listed.json()["items"]] == [comment.id]
    deleted = await client.delete(f"/comments/{comment.id}", headers=assignee_headers)
    assert deleted.status_code == 204
    assert_problem(
        await client.get(f"/comments/{comment.id}", headers=owner_headers), 404, "not_found"
    )


@pytest.mark.parametrize(
    ("author", "caller", "expected"),
    [
        ("owner", "owner", 204),
        ("assignee", "assignee", 204),
        ("owner", "admin", 204),
        ("assignee", "admin", 204),
        ("owner", "assignee", 403),
        ("assignee", "owner", 403),
        ("owner", "stranger", 404),
        ("assignee", "stranger", 404),
    ],
)
async def test_delete_comment_by_role(
    client: AsyncClient, session: AsyncSession, author: str, caller: str, expected: int
) -> None:
    people, task = await make_assigned_task(session)
    comment = await make_comment(session, task=task, author=people[author])

    response = await client.delete(
        f"/comments/{comment.id}", headers=await login(client, people[caller])
    )

    after = await client.get(
        f"/comments/{comment.id}", headers=await login(client, people["owner"])
    )
    if expected == 204:
        assert response.status_code == 204
        assert response.content == b""
        assert_problem(after, 404, "not_found")
    else:
        assert_problem(response, expected, "forbidden" if expected == 403 else "not_found")
        assert after.status_code == 200


async def test_deleting_a_task_deletes_its_comments(
    client: AsyncClient, session: AsyncSession
) -> None:
    people, task = await make_assigned_task(session)
    comment = await make_comment(session, task=task, author=people["assignee"])
    headers = await login(client, people["owner"])

    assert (await client.delete(f"/tasks/{task.id}", headers=headers)).status_code == 204

    assert_problem(await client.get(f"/comments/{comment.id}", headers=headers), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "body"]),
        ({"body": ""}, ["body", "body"]),
        ({"body": " \n\t "}, ["body", "body"]),
        ({"body": "x" * 5001}, ["body", "body"]),
        ({"body": None}, ["body", "body"]),
        ({"body": ["a"]}, ["body", "body"]),
        ({"body": "nul \x00"}, ["body", "body"]),
        ({"body": "ok", "author_id": 1}, ["body", "author_id"]),
        ({"body": "ok", "task_id": 1}, ["body", "task_id"]),
    ],
)
async def test_create_comment_refuses_a_broken_field(
    client: AsyncClient, session: AsyncSession, body: dict[str, Any], loc: list[str]
) -> None:
    people, task = await make_assigned_task(session)
    headers = await login(client, people["owner"])

    response = await client.post(f"/tasks/{task.id}/comments", json=body, headers=headers)

    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == loc
    assert (await client.get(f"/tasks/{task.id}/comments", headers=headers)).json()["items"] == []


async def test_create_comment_accepts_the_longest_body(
    client: AsyncClient, session: AsyncSession
) -> None:
    people, task = await make_assigned_task(session)

    response = await client.post(
        f"/tasks/{task.id}/comments",
        json={"body": "b" * 5000},
        headers=await login(client, people["assignee"]),
    )

    assert response.status_code == 201
    assert response.json()["body"] == "b" * 5000


@pytest.mark.parametrize(
    ("method", "path", "loc"),
    [
        ("GET", "/comments/abc", ["path", "comment_id"]),
        ("DELETE", "/comments/0", ["path", "comment_id"]),
        ("GET", f"/comments/{2**31}", ["path", "comment_id"]),
        ("POST", "/tasks/abc/comments", ["path", "task_id"]),
        ("GET", f"/tasks/{2**64}/comments", ["path", "task_id"]),
    ],
)
async def test_a_bad_id_is_a_validation_error(
    client: AsyncClient, session: AsyncSession, method: str, path: str, loc: list[str]
) -> None:
    user = await make_user(session)

    response = await client.request(
        method, path, json={"body": "b"}, headers=await login(client, user)
    )

    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == loc


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/tasks/{task}/comments"),
        ("GET", "/tasks/{task}/comments"),
        ("GET", "/comments/{comment}"),
        ("DELETE", "/comments/{comment}"),
    ],
)
@pytest.mark.parametrize("token", [None, "not-a-jwt"])
async def test_comment_endpoints_require_a_valid_token(
    client: AsyncClient, session: AsyncSession, method: str, path: str, token: str | None
) -> None:
    people, task = await make_assigned_task(session)
    comment = await make_comment(session, task=task, author=people["owner"])
    headers = {} if token is None else bearer(token)

    response = await client.request(
        method, path.format(task=task.id, comment=comment.id), json={"body": "b"}, headers=headers
    )

    assert_problem(response, 401, "not_authenticated" if token is None else "invalid_token")
    assert response.headers["www-authenticate"] == "Bearer"
    listed = await client.get(
        f"/tasks/{task.id}/comments", headers=await login(client, people["owner"])
    )
    assert [item["id"] for item in listed.json()["items"]] == [comment.id]


async def test_commenting_on_a_task_deleted_meanwhile_answers_404(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    people, task = await make_assigned_task(session)
    headers = await login(client, people["assignee"])
    await race_after_load(
        monkeypatch, app, task_service, Task, client=client, headers=headers, delete=True
    )

    response = await client.post(f"/tasks/{task.id}/comments", json={"body": "b"}, headers=headers)

    assert_problem(response, 404, "not_found")
