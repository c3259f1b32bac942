"""task_counts follow the project's tasks; deleting a project leaves no orphan rows."""

import asyncio
from typing import Any

import sqlalchemy as sa
from httpx import AsyncClient
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment
from fasttrack.core.db import utcnow
from fasttrack.projects.models import Project
from fasttrack.tasks import counts as task_counts
from fasttrack.tasks.models import Task, TaskStatus
from tests.factories import login, make_comment, make_project, make_task, make_user


async def _counts(client: AsyncClient, project_id: int, headers: dict[str, str]) -> Any:
    response = await client.get(f"/projects/{project_id}", headers=headers)
    assert response.status_code == 200
    return response.json()["task_counts"]


async def test_task_counts_follow_create_status_change_and_delete(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    assert project.id is not None
    headers = await login(client, owner)

    created = []
    for title in ("a", "b", "c"):
        response = await client.post(
            f"/projects/{project.id}/tasks", json={"title": title}, headers=headers
        )
        assert response.status_code == 201
        created.append(response.json()["id"])
    assert await _counts(client, project.id, headers) == {
        "todo": 3,
        "in_progress": 0,
        "done": 0,
        "total": 3,
    }

    for status in ("in_progress", "done"):
        response = await client.patch(
            f"/tasks/{created[0]}", json={"status": status}, headers=headers
        )
        assert response.status_code == 200
    await client.patch(f"/tasks/{created[1]}", json={"status": "in_progress"}, headers=headers)
    assert await _counts(client, project.id, headers) == {
        "todo": 1,
        "in_progress": 1,
        "done": 1,
        "total": 3,
    }

    assert (await client.delete(f"/tasks/{created[0]}", headers=headers)).status_code == 204
    assert await _counts(client, project.id, headers) == {
        "todo": 1,
        "in_progress": 1,
        "done": 0,
        "total": 2,
    }


async def test_task_counts_ignore_other_projects_and_keep_the_etag(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    project, other = (
        await make_project(session, owner=owner),
        await make_project(session, owner=owner),
    )
    await make_task(session, project=other, status=TaskStatus.done)
    headers = await login(client, owner)

    response = await client.post(
        f"/projects/{project.id}/tasks", json={"title": "t", "status": "done"}, headers=headers
    )
    assert response.status_code == 201

    after = await client.get(f"/projects/{project.id}", headers=headers)
    assert after.json()["task_counts"] == {"todo": 0, "in_progress": 0, "done": 1, "total": 1}
    # Derived counts are not an edit of the project: an ETag read before still applies.
    assert after.headers["etag"] == '"1"'


async def test_deleting_a_project_removes_its_tasks_and_their_comments(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    doomed, kept = (
        await make_project(session, owner=owner),
        await make_project(session, owner=owner),
    )
    doomed_tasks = [await make_task(session, project=doomed) for _ in range(2)]
    for task in doomed_tasks:
        for _ in range(2):
            await make_comment(session, task=task, author=owner)
    kept_task = await make_task(session, project=kept)
    kept_comment = await make_comment(session, task=kept_task, author=owner)
    doomed_ids = [task.id for task in doomed_tasks]

    response = await client.delete(f"/projects/{doomed.id}", headers=await login(client, owner))

    assert response.status_code == 204
    orphan_tasks = await session.exec(
        select(func.count()).select_from(Task).where(Task.project_id == doomed.id)
    )
    assert orphan_tasks.one() == 0
    orphan_comments = await session.exec(
        select(func.count()).select_from(Comment).where(col(Comment.task_id).in_(doomed_ids))
    )
    assert orphan_comments.one() == 0
    survivors = await session.exec(select(Comment.id).join(Task).where(Task.project_id == kept.id))
    assert survivors.all() == [kept_comment.id]


async def test_task_counts_are_right_after_concurrent_changes(
    client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    assert project.id is not None
    started = [await make_task(session, project=project) for _ in range(4)]
    headers = await login(client, owner)

    await asyncio.gather(
        *(
            client.post(f"/projects/{project.id}/tasks", json={"title": f"t{n}"}, headers=headers)
            for n in range(6)
        ),
        *(
            client.patch(f"/tasks/{task.id}", json={"status": "in_progress"}, headers=headers)
            for task in started
        ),
    )

    assert await _counts(client, project.id, headers) == {
        "todo": 6,
        "in_progress": 4,
        "done": 0,
        "total": 10,
    }


async def test_counts_follow_tasks_written_outside_the_service(session: AsyncSession) -> None:
    # The counts are kept by the database (triggers of the task table), not by the API.
    project = await make_project(session, owner=await make_user(session))
    assert project.id is not None
    await session.exec(
        sa.insert(Task).values(
            [{**_row(project.id), "status": status} for status in ("todo", "done", "done")]
        )
    )
    await session.exec(
        sa.update(Task).where(col(Task.status) == "todo").values(status="in_progress")
    )
    await session.commit()

    assert await _stored_counts(session, project.id) == (0, 1, 2)


async def test_recounting_a_deleted_project_does_nothing(session: AsyncSession) -> None:
    project = await make_project(session, owner=await make_user(session))
    assert project.id is not None
    await session.exec(sa.delete(Project).where(col(Project.id) == project.id))
    await session.commit()

    await task_counts.recount(session, project.id)
    await session.commit()

    assert (await session.exec(select(func.count()).select_from(Project))).one() == 0


async def test_drifted_counts_are_repaired(client: AsyncClient, session: AsyncSession) -> None:
    owner = await make_user(session)
    drifted, fresh, empty = [await make_project(session, owner=owner) for _ in range(3)]
    assert drifted.id is not None
    assert fresh.id is not None
    assert empty.id is not None
    for status in (TaskStatus.todo, TaskStatus.done, TaskStatus.done):
        await make_task(session, project=drifted, status=status)
    await make_task(session, project=fresh, status=TaskStatus.in_progress)
    # What a restore of the project table alone, or rows written with the triggers
    # dropped, leaves behind.
    for project_id, counts in ((drifted.id, {"done_count": 0}), (empty.id, {"todo_count": 2})):
        await session.exec(sa.update(Project).where(col(Project.id) == project_id).values(counts))
    await session.commit()

    assert await task_counts.repair_task_counts(session) == sorted([drifted.id, empty.id])

    headers = await login(client, owner)
    assert await _counts(client, drifted.id, headers) == {
        "todo": 1,
        "in_progress": 0,
        "done": 2,
        "total": 3,
    }
    assert (await _counts(client, empty.id, headers))["total"] == 0
    assert (await _counts(client, fresh.id, headers))["in_progress"] == 1
    assert await task_counts.repair_task_counts(session) == []


def _row(project_id: int) -> dict[str, Any]:
    now = utcnow()
    return {
        "project_id": project_id,
        "title": "by hand",
        "priority": "medium",
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


async def _stored_counts(session: AsyncSession, project_id: int) -> tuple[int, int, int]:
    statement = select(Project.todo_count, Project.in_progress_count, Project.done_count).where(
        col(Project.id) == project_id
    )
    return tuple((await session.exec(statement)).one())  # type: ignore[return-value]
