"""Ids are never reused: after the newest row is deleted, the next one gets a larger id, so
an old link, ETag or notification never names another resource."""

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import assert_problem, login, make_user


async def _created_id(
    client: AsyncClient, path: str, body: dict[str, str], *, headers: dict[str, str]
) -> int:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: int = response.json()["id"]
    return created


async def test_a_deleted_newest_project_id_is_never_given_again(
    client: AsyncClient, session: AsyncSession
) -> None:
    headers = await login(client, await make_user(session))
    older = await _created_id(client, "/projects", {"name": "Older"}, headers=headers)
    newest = await _created_id(client, "/projects", {"name": "Newest"}, headers=headers)
    assert (await client.delete(f"/projects/{newest}", headers=headers)).status_code == 204

    after = await _created_id(client, "/projects", {"name": "After"}, headers=headers)

    assert after > newest > older
    assert_problem(await client.get(f"/projects/{newest}", headers=headers), 404, "not_found")
    assert (await client.get(f"/projects/{after}", headers=headers)).json()["name"] == "After"


async def test_a_deleted_newest_task_id_is_never_given_again(
    client: AsyncClient, session: AsyncSession
) -> None:
    headers = await login(client, await make_user(session))
    project = await _created_id(client, "/projects", {"name": "P"}, headers=headers)
    tasks = f"/projects/{project}/tasks"
    older = await _created_id(client, tasks, {"title": "Older"}, headers=headers)
    newest = await _created_id(client, tasks, {"title": "Newest"}, headers=headers)
    assert (await client.delete(f"/tasks/{newest}", headers=headers)).status_code == 204

    after = await _created_id(client, tasks, {"title": "After"}, headers=headers)

    assert after > newest > older
    assert_problem(await client.get(f"/tasks/{newest}", headers=headers), 404, "not_found")
    assert (await client.get(f"/tasks/{after}", headers=headers)).json()["title"] == "After"


async def test_a_deleted_newest_comment_id_is_never_given_again(
    client: AsyncClient, session: AsyncSession
) -> None:
    headers = await login(client, await make_user(session))
    project = await _created_id(client, "/projects", {"name": "P"}, headers=headers)
    task = await _created_id(client, f"/projects/{project}/tasks", {"title": "T"}, headers=headers)
    comments = f"/tasks/{task}/comments"
    older = await _created_id(client, comments, {"body": "Older"}, headers=headers)
    newest = await _created_id(client, comments, {"body": "Newest"}, headers=headers)
    assert (await client.delete(f"/comments/{newest}", headers=headers)).status_code == 204

    after = await _created_id(client, comments, {"body": "After"}, headers=headers)

    assert after > newest > older
    assert_problem(await client.delete(f"/comments/{newest}", headers=headers), 404, "not_found")
    listed = (await client.get(comments, headers=headers)).json()["items"]
    assert [(item["id"], item["body"]) for item in listed] == [(older, "Older"), (after, "After")]


async def test_a_project_deleted_with_its_tasks_gives_neither_id_again(
    client: AsyncClient, session: AsyncSession
) -> None:
    headers = await login(client, await make_user(session))
    project = await _created_id(client, "/projects", {"name": "Doomed"}, headers=headers)
    task = await _created_id(client, f"/projects/{project}/tasks", {"title": "T"}, headers=headers)
    assert (await client.delete(f"/projects/{project}", headers=headers)).status_code == 204

    new_project = await _created_id(client, "/projects", {"name": "New"}, headers=headers)
    new_task = await _created_id(
        client, f"/projects/{new_project}/tasks", {"title": "New"}, headers=headers
    )

    assert new_project > project
    assert new_task > task
    assert_problem(await client.get(f"/tasks/{task}", headers=headers), 404, "not_found")
