"""A project's members (SPEC §11): adding, roles, removal and leaving, transfer."""

from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.notifications.models import Notification
from fasttrack.projects.models import MemberRole, Project
from fasttrack.tasks.models import Task
from fasttrack.users.models import User
from tests.factories import (
    assert_problem,
    login,
    make_admin,
    make_member,
    make_project,
    make_task,
    make_user,
)


async def _team(session: AsyncSession) -> tuple[User, User, Project]:
    owner, member = await make_user(session), await make_user(session)
    project = await make_project(session, owner=owner)
    return owner, member, project


async def _inbox(session: AsyncSession, user: User) -> list[tuple[str, dict[str, Any]]]:
    rows = await session.exec(
        select(Notification).where(Notification.user_id == user.id).order_by(col(Notification.id))
    )
    return [(row.type, row.data) for row in rows.all()]


async def test_the_owner_adds_a_member_by_id_who_is_told(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, member, project = await _team(session)
    headers = await login(client, owner)

    response = await client.post(
        f"/projects/{project.id}/members", json={"user_id": member.id}, headers=headers
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user_id"] == member.id
    assert body["project_id"] == project.id
    assert body["role"] == "editor"  # the default
    assert body["email"] == member.email
    assert body["display_name"] == member.display_name
    assert response.headers["location"].endswith(f"/projects/{project.id}/members/{member.id}")
    got = await client.get(response.headers["location"], headers=headers)
    assert got.json() == body
    assert await _inbox(session, member) == [
        (
            "member_added",
            {
                "project_id": project.id,
                "project_name": project.name,
                "role": "editor",
                "added_by": {"id": owner.id, "display_name": owner.display_name},
            },
        )
    ]
    assert await _inbox(session, owner) == []  # never the actor


async def test_a_member_is_added_by_e_mail_in_any_letter_case(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, member, project = await _team(session)
    headers = await login(client, owner)

    response = await client.post(
        f"/projects/{project.id}/members",
        json={"email": member.email.upper(), "role": "viewer"},
        headers=headers,
    )

    assert response.status_code == 201, response.text
    assert (response.json()["user_id"], response.json()["role"]) == (member.id, "viewer")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_id": 1, "email": "both@example.com"},
        {"user_id": 1, "role": "owner"},
        {"user_id": 1, "role": "admin"},
        {"user_id": 1, "extra": True},
    ],
)
async def test_adding_needs_exactly_one_user_and_an_assignable_role(
    client: AsyncClient, session: AsyncSession, body: dict[str, Any]
) -> None:
    owner, _, project = await _team(session)
    headers = await login(client, owner)

    response = await client.post(f"/projects/{project.id}/members", json=body, headers=headers)

    assert_problem(response, 422, "validation_error")


async def test_adding_an_unknown_or_inactive_user_is_unknown_user(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, _, project = await _team(session)
    inactive = await make_user(session, is_active=False)
    headers = await login(client, owner)
    path = f"/projects/{project.id}/members"

    for body in (
        {"user_id": 2_000_000},
        {"email": "nobody@example.com"},
        {"user_id": inactive.id},
        {"email": inactive.email},
    ):
        assert_problem(await client.post(path, json=body, headers=headers), 422, "unknown_user")


async def test_adding_a_member_twice_is_a_conflict(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, member, project = await _team(session)
    headers = await login(client, owner)
    path = f"/projects/{project.id}/members"
    assert (
        await client.post(path, json={"user_id": member.id}, headers=headers)
    ).status_code == 201

    again = await client.post(path, json={"email": member.email}, headers=headers)

    assert_problem(again, 409, "conflict")
    assert_problem(
        await client.post(path, json={"user_id": owner.id}, headers=headers), 409, "conflict"
    )


async def test_members_are_listed_by_user_id_and_filtered_by_role(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, member, project = await _team(session)
    viewer = await make_user(session)
    await make_member(session, project=project, user=member, role=MemberRole.editor)
    await make_member(session, project=project, user=viewer, role=MemberRole.viewer)
    headers = await login(client, viewer)
    path = f"/projects/{project.id}/members"

    everyone = (await client.get(path, headers=headers)).json()
    viewers = (await client.get(path, params={"role": "viewer"}, headers=headers)).json()
    first = (await client.get(path, params={"limit": 1}, headers=headers)).json()

    ids = [user.id for user in (owner, member, viewer)]
    assert [m["user_id"] for m in everyone["items"]] == sorted(i for i in ids if i is not None)
    assert [m["role"] for m in everyone["items"]] == ["owner", "editor", "viewer"]
    assert [m["user_id"] for m in viewers["items"]] == [viewer.id]
    rest = (
        await client.get(path, params={"limit": 5, "cursor": first["next_cursor"]}, headers=headers)
    ).json()
    assert [m["user_id"] for m in first["items"] + rest["items"]] == [
        m["user_id"] for m in everyone["items"]
    ]


async def test_a_user_who_is_not_a_member_is_404_as_a_member(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, stranger, project = await _team(session)
    headers = await login(client, owner)

    response = await client.get(f"/projects/{project.id}/members/{stranger.id}", headers=headers)

    assert_problem(response, 404, "not_found")


async def test_the_owner_changes_a_role_but_never_their_own_row(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, member, project = await _team(session)
    await make_member(session, project=project, user=member, role=MemberRole.editor)
    headers = await login(client, owner)
    path = f"/projects/{project.id}/members"

    changed = await client.patch(f"{path}/{member.id}", json={"role": "viewer"}, headers=headers)
    owners_row = await client.patch(f"{path}/{owner.id}", json={"role": "editor"}, headers=headers)
    to_owner = await client.patch(f"{path}/{member.id}", json={"role": "owner"}, headers=headers)

    assert changed.status_code == 200, changed.text
    assert changed.json()["role"] == "viewer"
    assert (await client.get(f"{path}/{member.id}", headers=headers)).json()["role"] == "viewer"
    assert_problem(owners_row, 409, "conflict")
    assert_problem(to_owner, 422, "validation_error")


async def test_removal_unassigns_the_members_tasks_in_that_project_only_and_cuts_access(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, member, project = await _team(session)
    other_project = await make_project(session, owner=owner)
    await make_member(session, project=project, user=member)
    here = await make_task(session, project=project, assignee=member)
    elsewhere = await make_task(session, project=other_project, assignee=member)
    owner_headers = await login(client, owner)
    member_headers = await login(client, member)
    # The member's reads are cached before the removal.
    for path in (f"/projects/{project.id}/tasks", f"/tasks/{here.id}", f"/tasks/{here.id}"):
        assert (await client.get(path, headers=member_headers)).status_code == 200

    removed = await client.delete(
        f"/projects/{project.id}/members/{member.id}", headers=owner_headers
    )

    assert removed.status_code == 204, removed.text
    for path in (
        f"/projects/{project.id}",
        f"/projects/{project.id}/tasks",
        f"/tasks/{here.id}",
        f"/tasks/{here.id}/comments",
        f"/projects/{project.id}/members",
    ):
        assert_problem(await client.get(path, headers=member_headers), 404, "not_found")
    assert (await client.get(f"/tasks/{here.id}", headers=owner_headers)).json()[
        "assignee_id"
    ] is None
    assert (await client.get(f"/tasks/{elsewhere.id}", headers=member_headers)).json()[
        "assignee_id"
    ] == member.id
    assert (
        "member_removed",
        {
            "project_id": project.id,
            "project_name": project.name,
            "removed_by": {"id": owner.id, "display_name": owner.display_name},
        },
    ) in await _inbox(session, member)


async def test_a_member_leaves_and_is_not_told_of_it(
    client: AsyncClient, session: AsyncSession
) -> None:
    _, member, project = await _team(session)
    await make_member(session, project=project, user=member, role=MemberRole.viewer)
    headers = await login(client, member)

    left = await client.delete(f"/projects/{project.id}/members/{member.id}", headers=headers)

    assert left.status_code == 204, left.text
    assert_problem(await client.get(f"/projects/{project.id}", headers=headers), 404, "not_found")
    assert await _inbox(session, member) == []


async def test_the_owner_can_neither_leave_nor_be_removed(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, _, project = await _team(session)
    admin = await make_admin(session)
    path = f"/projects/{project.id}/members/{owner.id}"

    assert_problem(await client.delete(path, headers=await login(client, owner)), 409, "conflict")
    assert_problem(await client.delete(path, headers=await login(client, admin)), 409, "conflict")


async def test_removing_someone_else_needs_the_owner_or_an_admin(
    client: AsyncClient, session: AsyncSession
) -> None:
    _, editor, project = await _team(session)
    viewer = await make_user(session)
    await make_member(session, project=project, user=editor)
    await make_member(session, project=project, user=viewer, role=MemberRole.viewer)
    admin = await make_admin(session)
    path = f"/projects/{project.id}/members/{viewer.id}"

    refused = await client.delete(path, headers=await login(client, editor))
    by_admin = await client.delete(path, headers=await login(client, admin))

    assert_problem(refused, 403, "forbidden")
    assert by_admin.status_code == 204


async def test_transfer_makes_a_member_the_owner_and_the_old_owner_an_editor(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, member, project = await _team(session)
    await make_member(session, project=project, user=member, role=MemberRole.viewer)
    headers = await login(client, owner)

    response = await client.post(
        f"/projects/{project.id}/transfer", json={"user_id": member.id}, headers=headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["owner_id"] == member.id
    assert response.headers["etag"] == '"2"'
    roles = {
        m["user_id"]: m["role"]
        for m in (await client.get(f"/projects/{project.id}/members", headers=headers)).json()[
            "items"
        ]
    }
    assert roles == {owner.id: "editor", member.id: "owner"}
    # The former owner no longer manages the project.
    assert_problem(
        await client.patch(f"/projects/{project.id}", json={"name": "x"}, headers=headers),
        403,
        "forbidden",
    )


async def test_transfer_refuses_non_members_inactive_members_and_the_owner(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, stranger, project = await _team(session)
    gone = await make_user(session)
    await make_member(session, project=project, user=gone)
    gone.is_active = False
    session.add(gone)
    await session.commit()
    headers = await login(client, owner)
    path = f"/projects/{project.id}/transfer"

    assert_problem(
        await client.post(path, json={"user_id": stranger.id}, headers=headers), 422, "not_a_member"
    )
    assert_problem(
        await client.post(path, json={"user_id": gone.id}, headers=headers), 422, "unknown_user"
    )
    assert_problem(
        await client.post(path, json={"user_id": owner.id}, headers=headers), 409, "conflict"
    )


async def test_a_projects_list_shows_the_callers_projects_by_role(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner, member, project = await _team(session)
    theirs = await make_project(session, owner=member)
    await make_member(session, project=project, user=member, role=MemberRole.viewer)
    await make_project(session, owner=owner)  # not the member's
    headers = await login(client, member)

    every = (await client.get("/projects", headers=headers)).json()["items"]
    viewed = (await client.get("/projects", params={"role": "viewer"}, headers=headers)).json()
    owned = (await client.get("/projects", params={"role": "owner"}, headers=headers)).json()

    assert [p["id"] for p in every] == [theirs.id, project.id]
    assert [p["id"] for p in viewed["items"]] == [project.id]
    assert [p["id"] for p in owned["items"]] == [theirs.id]


async def test_an_assignee_must_be_an_active_member(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    owner, stranger, project = await _team(session)
    member = await make_user(session)
    await make_member(session, project=project, user=member)
    headers = await login(client, owner)
    path = f"/projects/{project.id}/tasks"

    refused = await client.post(
        path, json={"title": "t", "assignee_id": stranger.id}, headers=headers
    )
    accepted = await client.post(
        path, json={"title": "t", "assignee_id": member.id}, headers=headers
    )

    assert refused.status_code == 422, refused.text
    assert accepted.status_code == 201, accepted.text
    stored = (await session.exec(select(Task).where(Task.project_id == project.id))).all()
    assert [task.assignee_id for task in stored] == [member.id]
