"""Projects: visibility, CRUD with optimistic concurrency, and the lock of a project's row."""

from typing import Final, NamedTuple

import sqlalchemy as sa
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.cache import ValidatedCache, project_scope, project_tasks_scope
from fasttrack.core.db import UnitOfWork, columns_of, commit, effects_of, execute, table_of, utcnow
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.core.versioning import IfMatch, save_versioned
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import (
    Project,
    ProjectCreate,
    ProjectRead,
    ProjectStatus,
    ProjectSummary,
    ProjectUpdate,
)
from fasttrack.users import service as user_service
from fasttrack.users.models import Role, UserRead

PROJECT: Final = table_of(Project)
_PROJECTS: Final = sa.select(*columns_of(Project, ProjectRead))
# Only the owner and admins see a project; for anyone else it does not exist.
_VISIBLE: Final = _PROJECTS.where(
    PROJECT.c.id == sa.bindparam("project_id"),
    sa.or_(user_service.VIEWER_IS_ADMIN, PROJECT.c.owner_id == user_service.VIEWER_ID),
)
_SUMMARY: Final = sa.select(*columns_of(Project, ProjectSummary)).where(
    PROJECT.c.id == sa.bindparam("project_id")
)
# An admin lists every project: the owner filter is then left out of the query.
_LIST: Final = KeysetList(
    _PROJECTS,
    ProjectRead,
    key=PROJECT.c.id,
    descending=True,
    filters={"owner_id": PROJECT.c.owner_id, "status": PROJECT.c.status},
)

# Summaries by project id, exact (see core.cache): a change to the project's own fields
# invalidates its scope. Task changes do not: the counts are not part of a summary.
SummaryCache = ValidatedCache[int, ProjectSummary]


async def get_visible(
    session: AsyncSession, project_id: int, *, viewer: UserRead
) -> ProjectRead | None:
    parameters = {"project_id": project_id, **user_service.as_viewer(viewer)}
    row = (await execute(session, _VISIBLE, parameters)).mappings().first()
    return None if row is None else ProjectRead.model_validate(row)


async def get_visible_summary(
    work: UnitOfWork, project_id: int, *, viewer: UserRead, cache: SummaryCache
) -> ProjectSummary | None:
    """The summary of a project the viewer may see (its owner or an admin), or None."""

    async def read() -> ProjectSummary | None:
        session = await work.session()
        parameters = {"project_id": project_id}
        row = (await execute(session, _SUMMARY, parameters)).mappings().first()
        return None if row is None else ProjectSummary.model_validate(row)

    summary = await cache.get_or_read(
        project_id, read, scopes=[project_scope(project_id)], may_wait=work.may_wait
    )
    if summary is None or not (viewer.role is Role.admin or summary.owner_id == viewer.id):
        return None
    return summary


async def list_projects(
    session: AsyncSession,
    params: CursorParams,
    *,
    viewer: UserRead,
    status: ProjectStatus | None = None,
) -> PageResult[ProjectRead]:
    owner_id = None if viewer.role is Role.admin else viewer.id
    return await _LIST.page(session, params, owner_id=owner_id, status=status)


async def create(session: AsyncSession, body: ProjectCreate, *, owner: UserRead) -> Project:
    project = Project.model_validate(body, update={"owner_id": owner.id})
    session.add(project)
    await commit(session)
    return project


async def update(
    session: AsyncSession, project_id: int, changes: ProjectUpdate, *, if_match: IfMatch | None
) -> Project:
    """Apply a PATCH; 412 if `if_match` no longer matches. An empty change is a no-op."""
    requested = changes.model_dump(exclude_unset=True)

    effects_of(session).invalidate(project_scope(project_id))

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
    effects_of(session).invalidate(project_scope(project_id), project_tasks_scope(project_id))
    await session.exec(sa.delete(Project).where(col(Project.id) == project_id))
    await commit(session)


class LockedProject(NamedTuple):
    name: str
    owner_id: int


async def lock(session: AsyncSession, project_id: int) -> LockedProject | None:
    """Lock a project's row for the rest of the transaction; its name and owner as they
    stand under the lock, or None if it is gone.

    Every change to a project's tasks locks this row before its task's (PostgreSQL; on
    SQLite the writer holds the whole database; a new task's INSERT takes it in its own
    statement, through its foreign key and the counts trigger). Why first:

    - the counts trigger updates this row in the task change's transaction anyway, and a
      change that held its task row while waiting for the project's could deadlock with
      a project deletion, which holds the project row while cascading to the tasks;
    - the rules of the change are decided on it: who manages the project's tasks (its
      owner) and whether it still exists are read under the lock, so the write cannot
      act on a project that changed or went away since the request's loaders read it.
    """
    # FOR NO KEY UPDATE: new tasks may still reference the row (their foreign key check).
    locked = (
        sa.select(PROJECT.c.name, PROJECT.c.owner_id)
        .where(PROJECT.c.id == project_id)
        .with_for_update(key_share=True)
    )
    row = (await execute(session, locked)).first()
    return None if row is None else LockedProject(name=row.name, owner_id=row.owner_id)
