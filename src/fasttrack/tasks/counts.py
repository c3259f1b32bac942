"""The task counts stored on each project: kept by triggers of the task table in the
task change's own transaction, recounted when they drift."""

import logging
from typing import Final

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.db import commit
from fasttrack.projects import access as project_access
from fasttrack.projects.models import Project
from fasttrack.tasks.models import Task, TaskStatus

logger = logging.getLogger("fasttrack.tasks")

COUNT_COLUMNS: Final = {
    TaskStatus.todo: "todo_count",
    TaskStatus.in_progress: "in_progress_count",
    TaskStatus.done: "done_count",
}


async def stale_task_counts(session: AsyncSession) -> list[int]:
    """The projects whose stored task counts differ from their tasks, in one aggregate."""
    actual = (
        select(
            col(Task.project_id).label("project_id"),
            *(
                sa.func.count().filter(col(Task.status) == status).label(column)
                for status, column in COUNT_COLUMNS.items()
            ),
        )
        .group_by(col(Task.project_id))
        .subquery()
    )
    differs = [
        getattr(Project, column) != sa.func.coalesce(actual.c[column], 0)
        for column in COUNT_COLUMNS.values()
    ]
    statement = (
        select(Project.id)
        .outerjoin(actual, actual.c.project_id == Project.id)
        .where(sa.or_(*differs))
        .order_by(col(Project.id))
    )
    return [project_id for project_id in (await session.exec(statement)).all() if project_id]


async def recount(session: AsyncSession, project_id: int) -> None:
    """Store a project's task counts, counted from its tasks. Flushes only."""
    # Locked first: the UPDATE below then counts from a snapshot in which no task change
    # of this project is still in flight, as each of those holds the row until it commits.
    if not await project_access.lock(session, project_id):
        return
    counts = {
        column: select(sa.func.count())
        .where(col(Task.project_id) == project_id, col(Task.status) == status)
        .scalar_subquery()
        for status, column in COUNT_COLUMNS.items()
    }
    # A Core UPDATE: derived data does not bump the version, so ETags stay valid.
    await session.exec(sa.update(Project).where(col(Project.id) == project_id).values(counts))


async def repair_task_counts(session: AsyncSession) -> list[int]:
    """Recount every project whose stored counts drifted from its tasks; return them.

    The counts follow each task change in its own transaction (a trigger), so they drift
    only when tasks change around that: rows written with the trigger dropped, a restore
    of one table without the other.
    """
    stale = await stale_task_counts(session)
    for project_id in stale:
        await recount(session, project_id)
        await commit(session)
    if stale:
        logger.warning("repaired the drifted task counts of %d projects", len(stale))
    return stale
