"""Projects: visibility by membership, CRUD with optimistic concurrency (SPEC §5, §11)."""

from typing import Final

import sqlalchemy as sa
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.cache import project_members_scope, project_scope, project_tasks_scope
from fasttrack.core.db import columns_of, commit, effects_of, execute, utcnow
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.core.versioning import IfMatch, save_versioned
from fasttrack.projects import members
from fasttrack.projects.access import MEMBER, PROJECT, Action, lock_access
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import (
    MemberRole,
    Project,
    ProjectCreate,
    ProjectRead,
    ProjectStatus,
    ProjectUpdate,
)
from fasttrack.users import service as user_service
from fasttrack.users.models import Role, UserRead

_PROJECTS: Final = sa.select(*columns_of(Project, ProjectRead))
# A project exists for its members and for admins; for anyone else it does not.
IS_MEMBER: Final = (
    sa.select(MEMBER.c.role)
    .where(MEMBER.c.project_id == PROJECT.c.id, MEMBER.c.user_id == user_service.VIEWER_ID)
    .exists()
)
_VISIBLE: Final = _PROJECTS.where(
    PROJECT.c.id == sa.bindparam("project_id"), sa.or_(user_service.VIEWER_IS_ADMIN, IS_MEMBER)
)
# An admin lists every project; anyone else the projects they are a member of, by role.
_ALL: Final = KeysetList(
    _PROJECTS, ProjectRead, key=PROJECT.c.id, descending=True, filters={"status": PROJECT.c.status}
)
_MINE: Final = KeysetList(
    _PROJECTS.join(MEMBER, MEMBER.c.project_id == PROJECT.c.id).where(
        MEMBER.c.user_id == sa.bindparam("user_id")
    ),
    ProjectRead,
    key=PROJECT.c.id,
    descending=True,
    filters={"status": PROJECT.c.status, "role": MEMBER.c.role},
)


async def get_visible(
    session: AsyncSession, project_id: int, *, viewer: UserRead
) -> ProjectRead | None:
    parameters = {"project_id": project_id, **user_service.as_viewer(viewer)}
    row = (await execute(session, _VISIBLE, parameters)).mappings().first()
    return None if row is None else ProjectRead.model_validate(row)


async def list_projects(
    session: AsyncSession,
    params: CursorParams,
    *,
    viewer: UserRead,
    status: ProjectStatus | None = None,
    role: MemberRole | None = None,
) -> PageResult[ProjectRead]:
    """The viewer's projects, newest first; an admin's are all of them unless `role`
    asks for the ones they are a member of in that role."""
    if viewer.role is Role.admin and role is None:
        return await _ALL.page(session, params, status=status)
    return await _MINE.page(session, params, user_id=viewer.id, status=status, role=role)


async def create(session: AsyncSession, body: ProjectCreate, *, owner: UserRead) -> Project:
    """A project, and its owner's membership, in one transaction."""
    project = Project.model_validate(body, update={"owner_id": owner.id})
    session.add(project)
    await session.flush()
    assert project.id is not None
    await members.add_owner(session, project.id, owner.id)
    await commit(session)
    return project


async def update(
    session: AsyncSession,
    project_id: int,
    changes: ProjectUpdate,
    *,
    actor: UserRead,
    if_match: IfMatch | None,
) -> Project:
    """Apply a PATCH (the owner or an admin, as the locked row says); 412 if `if_match`
    no longer matches. An empty change is a no-op."""
    requested = changes.model_dump(exclude_unset=True)
    (await lock_access(session, project_id, actor)).require(Action.manage)
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


async def delete(session: AsyncSession, project_id: int, *, actor: UserRead) -> None:
    """Delete a project (the owner or an admin, as the locked row says); the database
    cascades to its members, tasks and their comments."""
    (await lock_access(session, project_id, actor)).require(Action.manage)
    effects_of(session).invalidate(
        project_scope(project_id),
        project_members_scope(project_id),
        project_tasks_scope(project_id),
    )
    await session.exec(sa.delete(Project).where(col(Project.id) == project_id))
    await commit(session)
