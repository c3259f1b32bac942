"""Projects: visibility, CRUD with optimistic concurrency, and derived task counts."""

from typing import Final

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.db import Database, utcnow
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.core.prepared import PreparedQuery, QueryRunner, Row, columns_of
from fasttrack.core.versioning import IfMatch, save_versioned
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import (
    Project,
    ProjectCreate,
    ProjectRead,
    ProjectStatus,
    ProjectUpdate,
)
from fasttrack.tasks.models import Task, TaskStatus
from fasttrack.users import service as user_service
from fasttrack.users.models import Role, UserRead

COUNT_COLUMNS: Final = {
    TaskStatus.todo: "todo_count",
    TaskStatus.in_progress: "in_progress_count",
    TaskStatus.done: "done_count",
}

_PROJECTS: Final = sa.select(*columns_of(Project, ProjectRead))
# Only the owner and admins see a project; for anyone else it does not exist.
_VISIBLE: Final = PreparedQuery(
    _PROJECTS.where(
        col(Project.id) == sa.bindparam("project_id"),
        sa.or_(user_service.VIEWER_IS_ADMIN, col(Project.owner_id) == user_service.VIEWER_ID),
    )
)
# An admin lists every project: the owner filter is then left out of the query.
_LIST: Final = KeysetList(
    _PROJECTS,
    key=col(Project.id),
    descending=True,
    filters={"owner_id": col(Project.owner_id), "status": col(Project.status)},
)


async def get_visible(
    reads: QueryRunner, project_id: int, *, viewer: UserRead
) -> ProjectRead | None:
    row = await reads.one_or_none(_VISIBLE, project_id=project_id, **user_service.as_viewer(viewer))
    return None if row is None else ProjectRead.model_validate(row)


async def list_projects(
    reads: QueryRunner,
    params: CursorParams,
    *,
    viewer: UserRead,
    status: ProjectStatus | None = None,
) -> PageResult[Row]:
    owner_id = None if viewer.role is Role.admin else viewer.id
    return await _LIST.page(reads, params, owner_id=owner_id, status=status)


async def create(session: AsyncSession, body: ProjectCreate, *, owner: UserRead) -> Project:
    project = Project.model_validate(body, update={"owner_id": owner.id})
    session.add(project)
    await session.commit()
    return project


async def update(
    session: AsyncSession, project_id: int, changes: ProjectUpdate, *, if_match: IfMatch | None
) -> Project:
    """Apply a PATCH; 412 if `if_match` no longer matches. An empty change is a no-op."""
    requested = changes.model_dump(exclude_unset=True)

    async def apply(project: Project) -> None:
        data = {
            field: value for field, value in requested.items() if getattr(project, field) != value
        }
        if data:
            project.sqlmodel_update(data)
            project.updated_at = utcnow()
            session.add(project)

    return await save_versioned(
        session, Project, project_id, if_match, apply, missing=ProjectNotFound
    )


async def delete(session: AsyncSession, project_id: int) -> None:
    """Delete a project; the database cascades to its tasks and their comments."""
    await session.exec(sa.delete(Project).where(col(Project.id) == project_id))
    await session.commit()


async def recompute_task_counts(session: AsyncSession, project_id: int) -> None:
    """Store a project's task counts, counted from its tasks (idempotent)."""
    # Lock the project row first (PostgreSQL; SQLite writers are serialised anyway): the
    # UPDATE below then counts from a snapshot taken after every earlier refresh of this
    # project committed, so a slower, older count can never overwrite a newer one.
    locked = select(Project.id).where(Project.id == project_id).with_for_update()
    if (await session.exec(locked)).first() is None:
        return
    counts = {
        column: select(sa.func.count())
        .where(col(Task.project_id) == project_id, col(Task.status) == status)
        .scalar_subquery()
        for status, column in COUNT_COLUMNS.items()
    }
    # A Core UPDATE: derived data does not bump the version, so ETags stay valid.
    await session.exec(sa.update(Project).where(col(Project.id) == project_id).values(counts))
    await session.commit()


async def stale_task_counts(session: AsyncSession) -> list[int]:
    """The projects whose stored task counts differ from their tasks, in one aggregate.

    Counts are refreshed after the change commits, so a process that dies in between
    (kill -9, power loss) leaves them stale until the project's next task change.
    """
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


class TaskCountRefresher:
    """Runs `recompute_task_counts` after task changes, as a background job.

    A burst of changes to one project needs one recount, not one each: while a refresh
    of a project runs, further requests only mark it dirty, and the running refresh
    counts again once it is done. Every change is still followed by a recount that
    started after it was committed.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._dirty: set[int] = set()
        self._running: set[int] = set()

    async def refresh(self, project_id: int) -> None:
        self._dirty.add(project_id)
        if project_id in self._running:
            return
        self._running.add(project_id)
        try:
            while project_id in self._dirty:
                self._dirty.discard(project_id)
                async with self._database.write_sessionmaker() as session:
                    await recompute_task_counts(session, project_id)
        finally:
            self._running.discard(project_id)

    async def repair(self) -> list[int]:
        """Recount every project whose counts are stale (after an unclean stop); return them."""
        async with self._database.sessionmaker() as session:
            stale = await stale_task_counts(session)
        for project_id in stale:
            await self.refresh(project_id)
        return stale
