"""Keyset pagination on every list: limits, cursors, and refusing bad or foreign cursors."""

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment
from fasttrack.core.pagination import CursorCodec, InvalidCursor
from fasttrack.projects.models import MemberRole, Project, ProjectMember
from fasttrack.tasks.models import Task
from tests.factories import assert_problem, login, make_user

ITEMS = 25


@dataclass(frozen=True)
class Lists:
    """A user with ITEMS rows in each of the lists they can read."""

    headers: dict[str, str]
    paths: dict[str, str]
    ids: dict[str, list[int]]


LIST_NAMES = ("projects", "project_tasks", "my_tasks", "comments")


@pytest.fixture
async def lists(client: AsyncClient, session: AsyncSession) -> Lists:
    me = await make_user(session)
    assert me.id is not None
    # One commit per kind instead of one per row keeps this fixture cheap.
    projects = [Project(name=f"p{n}", owner_id=me.id) for n in range(ITEMS)]
    session.add_all(projects)
    await session.commit()
    # Their owner is their member (SPEC §11), as make_project would make them.
    session.add_all(
        ProjectMember(project_id=p.id, user_id=me.id, role=MemberRole.owner)
        for p in projects
        if p.id is not None
    )
    await session.commit()
    project = projects[0]
    assert project.id is not None
    tasks = [Task(project_id=project.id, title=f"t{n}", assignee_id=me.id) for n in range(ITEMS)]
    session.add_all(tasks)
    await session.commit()
    commented = tasks[0]
    assert commented.id is not None
    comments = [Comment(task_id=commented.id, author_id=me.id, body=f"c{n}") for n in range(ITEMS)]
    session.add_all(comments)
    await session.commit()

    def ids(rows: Sequence[Project | Task | Comment]) -> list[int]:
        return [row.id for row in rows if row.id is not None]

    return Lists(
        headers=await login(client, me),
        paths={
            "projects": "/projects",
            "project_tasks": f"/projects/{project.id}/tasks",
            "my_tasks": "/users/me/tasks",
            "comments": f"/tasks/{commented.id}/comments",
            # Lists that only the cursor tests use: another parent, other filters.
            "other_project_tasks": f"/projects/{projects[1].id}/tasks",
            "todo_project_tasks": f"/projects/{project.id}/tasks?status=todo",
        },
        ids={
            "projects": sorted(ids(projects), reverse=True),
            "project_tasks": sorted(ids(tasks), reverse=True),
            "my_tasks": sorted(ids(tasks), reverse=True),
            "comments": sorted(ids(comments)),
        },
    )


@pytest.mark.parametrize("name", LIST_NAMES)
async def test_default_page_is_20_and_the_cursor_leads_to_the_rest(
    client: AsyncClient, lists: Lists, name: str
) -> None:
    first = await client.get(lists.paths[name], headers=lists.headers)
    second = await client.get(
        lists.paths[name], params={"cursor": first.json()["next_cursor"]}, headers=lists.headers
    )

    assert first.status_code == second.status_code == 200
    assert [item["id"] for item in first.json()["items"]] == lists.ids[name][:20]
    assert first.json()["has_more"] is True
    cursor = first.json()["next_cursor"]
    assert isinstance(cursor, str)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert [item["id"] for item in second.json()["items"]] == lists.ids[name][20:]
    assert (second.json()["has_more"], second.json()["next_cursor"]) == (False, None)


@pytest.mark.parametrize("name", LIST_NAMES)
@pytest.mark.parametrize("limit", [1, 7, 25, 100])
async def test_walking_with_any_limit_returns_every_item_once_in_order(
    client: AsyncClient, lists: Lists, name: str, limit: int
) -> None:
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get(lists.paths[name], params=params, headers=lists.headers)).json()
        assert 0 < len(page["items"]) <= limit
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break

    assert seen == lists.ids[name]


@pytest.mark.parametrize("name", LIST_NAMES)
@pytest.mark.parametrize("limit", ["0", "101", "-1", "1.5", "ten", ""])
async def test_a_limit_out_of_range_is_a_validation_error(
    client: AsyncClient, lists: Lists, name: str, limit: str
) -> None:
    response = await client.get(lists.paths[name], params={"limit": limit}, headers=lists.headers)

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["query", "limit"]


def _tampered(cursor: str) -> str:
    """The same MAC with the position moved by one."""
    payload, _, mac = cursor.partition(".")
    position = int(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    moved = base64.urlsafe_b64encode(str(position - 1).encode()).rstrip(b"=").decode()
    return f"{moved}.{mac}"


@pytest.mark.parametrize("name", LIST_NAMES)
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",
        ".",
        "MTA.",
        "MTA.AAAAAAAAAAAAAAAA",
        "!!!.???",
        "é.é",
        "MTA.ü",
        "\x00",
        "tampered",
    ],
)
async def test_a_malformed_or_tampered_cursor_is_refused(
    client: AsyncClient, lists: Lists, name: str, cursor: str
) -> None:
    if cursor == "tampered":
        first = await client.get(lists.paths[name], params={"limit": 3}, headers=lists.headers)
        cursor = _tampered(first.json()["next_cursor"])

    response = await client.get(lists.paths[name], params={"cursor": cursor}, headers=lists.headers)

    problem = assert_problem(response, 422, "invalid_cursor")
    assert problem["request_id"] == response.headers["x-request-id"]


async def test_an_overlong_cursor_is_refused(client: AsyncClient, lists: Lists) -> None:
    response = await client.get("/projects", params={"cursor": "A" * 201}, headers=lists.headers)

    assert_problem(response, 422, "invalid_cursor")


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("comments", "projects"),
        ("projects", "comments"),
        ("project_tasks", "projects"),
        ("projects", "my_tasks"),
        ("comments", "project_tasks"),
        # The same table and order, another parent or other filters.
        ("project_tasks", "my_tasks"),
        ("project_tasks", "other_project_tasks"),
        ("project_tasks", "todo_project_tasks"),
    ],
)
async def test_a_cursor_from_another_list_is_refused(
    client: AsyncClient, lists: Lists, source: str, target: str
) -> None:
    foreign = await client.get(lists.paths[source], params={"limit": 2}, headers=lists.headers)
    path, _, query = lists.paths[target].partition("?")

    response = await client.get(
        path,
        params={**dict(parse_qsl(query)), "cursor": foreign.json()["next_cursor"]},
        headers=lists.headers,
    )

    assert_problem(response, 422, "invalid_cursor")


async def test_a_cursor_signed_by_another_deployment_is_refused(
    client: AsyncClient, lists: Lists
) -> None:
    forged = CursorCodec(b"some other secret").encode("project.id:desc", lists.ids["projects"][3])

    response = await client.get("/projects", params={"cursor": forged}, headers=lists.headers)

    assert_problem(response, 422, "invalid_cursor")


def test_a_signed_cursor_that_is_not_a_position_is_still_refused() -> None:
    codec = CursorCodec(b"secret")
    payload = "bm90LWEtbnVtYmVy"  # base64 of "not-a-number"
    cursor = f"{payload}.{codec._mac('project.id:desc', payload)}"

    with pytest.raises(InvalidCursor):
        codec.decode("project.id:desc", cursor)
