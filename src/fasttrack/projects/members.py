"""A project's members: add, change, remove, leave, transfer (SPEC §11).

Every change locks the project's row first (`access.lock_access`), as every change of
its tasks does: the role a concurrent write is decided on cannot change before it
commits, and removal's unassigning of tasks cannot interleave with an assignment.
"""

from typing import Any, Final

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.cache import project_members_scope, project_scope, project_tasks_scope
from fasttrack.core.db import (
    UTCDateTime,
    columns_of,
    commit,
    effects_of,
    execute,
    table_of,
    utcnow,
)
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.notifications import service as notification_service
from fasttrack.notifications.models import NotificationType
from fasttrack.projects.access import MEMBER, PROJECT, Action, ProjectAccess, lock_access
from fasttrack.projects.exceptions import (
    AlreadyAMember,
    MemberNotFound,
    NotAMember,
    OwnerRowProtected,
    UnknownUser,
)
from fasttrack.projects.models import (
    MemberAdd,
    MemberRead,
    MemberRole,
    MemberUpdate,
    Project,
    ProjectMember,
    ProjectRead,
    Transfer,
)
from fasttrack.users.models import User, UserRead

USER: Final = table_of(User)
# The columns of the task table that removing a member changes. Named here rather than
# imported: the tasks domain depends on projects, never the reverse.
TASK: Final = sa.table(
    "task",
    sa.column("project_id", sa.Integer),
    sa.column("assignee_id", sa.Integer),
    sa.column("version", sa.Integer),
    sa.column("updated_at", UTCDateTime),
)

_MEMBERS: Final = sa.select(
    MEMBER.c.user_id,
    MEMBER.c.project_id,
    MEMBER.c.role,
    USER.c.email,
    USER.c.display_name,
    MEMBER.c.added_at,
).join(USER, USER.c.id == MEMBER.c.user_id)
_MEMBER: Final = _MEMBERS.where(
    MEMBER.c.project_id == sa.bindparam("project_id"),
    MEMBER.c.user_id == sa.bindparam("user_id"),
)
_LIST: Final = KeysetList(
    _MEMBERS.where(MEMBER.c.project_id == sa.bindparam("project_id")),
    MemberRead,
    key=MEMBER.c.user_id,
    descending=False,
    filters={"role": MEMBER.c.role},
)
_ACTIVE_USER_BY_ID: Final = sa.select(USER.c.id).where(
    USER.c.id == sa.bindparam("user_id"), USER.c.is_active.is_(True)
)
_ACTIVE_USER_BY_EMAIL: Final = sa.select(USER.c.id).where(
    USER.c.email == sa.bindparam("email"), USER.c.is_active.is_(True)
)
_ROLE: Final = (
    sa.select(MEMBER.c.role, USER.c.is_active)
    .join(USER, USER.c.id == MEMBER.c.user_id)
    .where(
        MEMBER.c.project_id == sa.bindparam("project_id"),
        MEMBER.c.user_id == sa.bindparam("user_id"),
    )
)


def _actor(user: UserRead) -> dict[str, Any]:
    return {"id": user.id, "display_name": user.display_name}


async def list_members(
    session: AsyncSession, project_id: int, params: CursorParams, *, role: MemberRole | None
) -> PageResult[MemberRead]:
    return await _LIST.page(session, params, project_id=project_id, role=role)


async def get_member(session: AsyncSession, project_id: int, user_id: int) -> MemberRead | None:
    row = (
        (await execute(session, _MEMBER, {"project_id": project_id, "user_id": user_id}))
        .mappings()
        .first()
    )
    return None if row is None else MemberRead.model_validate(row)


async def _member_or_404(session: AsyncSession, project_id: int, user_id: int) -> MemberRead:
    member = await get_member(session, project_id, user_id)
    if member is None:
        raise MemberNotFound()
    return member


async def _locked(session: AsyncSession, project_id: int, actor: UserRead) -> ProjectAccess:
    access = await lock_access(session, project_id, actor)
    effects_of(session).invalidate(project_members_scope(project_id))
    return access


async def add(
    session: AsyncSession, project_id: int, body: MemberAdd, *, actor: UserRead
) -> MemberRead:
    """Add an active user by id or e-mail (the owner or an admin); they are told."""
    access = await _locked(session, project_id, actor)
    access.require(Action.manage)
    if "user_id" in body.model_fields_set:
        found = await execute(session, _ACTIVE_USER_BY_ID, {"user_id": body.user_id})
    else:
        found = await execute(session, _ACTIVE_USER_BY_EMAIL, {"email": body.email})
    user_id = found.scalar()
    if user_id is None:
        raise UnknownUser()
    # Under the project's lock no other change of its members runs: checked, then added.
    if await get_member(session, project_id, user_id) is not None:
        raise AlreadyAMember()
    await execute(
        session,
        sa.insert(MEMBER).values(
            project_id=project_id, user_id=user_id, role=body.role, added_at=utcnow()
        ),
    )
    await notification_service.notify(
        session,
        [user_id],
        NotificationType.member_added,
        {
            "project_id": project_id,
            "project_name": access.project.name,
            "role": body.role.value,
            "added_by": _actor(actor),
        },
        actor=actor,
    )
    member = await _member_or_404(session, project_id, user_id)
    await commit(session)
    return member


async def change_role(
    session: AsyncSession, project_id: int, user_id: int, body: MemberUpdate, *, actor: UserRead
) -> MemberRead:
    """The owner or an admin gives a member another role; the owner's row only moves
    by a transfer (409)."""
    access = await _locked(session, project_id, actor)
    access.require(Action.manage)
    member = await _member_or_404(session, project_id, user_id)
    if member.role is MemberRole.owner:
        raise OwnerRowProtected()
    if member.role is not body.role:
        await execute(
            session,
            sa.update(MEMBER)
            .where(MEMBER.c.project_id == project_id, MEMBER.c.user_id == user_id)
            .values(role=body.role),
        )
        member = member.model_copy(update={"role": body.role})
    await commit(session)
    return member


async def remove(session: AsyncSession, project_id: int, user_id: int, *, actor: UserRead) -> None:
    """Remove a member (the owner or an admin), or leave (any member, for themselves).

    In the same transaction the member's tasks in this project are unassigned; the caches
    of the project's members and tasks go stale everywhere before the answer, so their
    very next request is answered 404. The owner cannot leave or be removed (409).
    """
    access = await _locked(session, project_id, actor)
    if user_id != actor.id:
        access.require(Action.manage)
    member = await _member_or_404(session, project_id, user_id)
    if member.role is MemberRole.owner:
        raise OwnerRowProtected()
    effects_of(session).invalidate(project_tasks_scope(project_id))
    await execute(
        session,
        sa.delete(MEMBER).where(MEMBER.c.project_id == project_id, MEMBER.c.user_id == user_id),
    )
    await execute(
        session,
        sa.update(TASK)
        .where(TASK.c.project_id == project_id, TASK.c.assignee_id == user_id)
        .values(assignee_id=None, version=TASK.c.version + 1, updated_at=utcnow()),
    )
    await notification_service.notify(
        session,
        [user_id],
        NotificationType.member_removed,
        {
            "project_id": project_id,
            "project_name": access.project.name,
            "removed_by": _actor(actor),
        },
        actor=actor,
    )
    await commit(session)


async def transfer(
    session: AsyncSession, project_id: int, body: Transfer, *, actor: UserRead
) -> ProjectRead:
    """Make a current, active member the owner; the previous owner stays as an editor."""
    access = await _locked(session, project_id, actor)
    access.require(Action.manage)
    row = (
        await execute(session, _ROLE, {"project_id": project_id, "user_id": body.user_id})
    ).first()
    if row is None:
        raise NotAMember()
    if not row.is_active:
        raise UnknownUser()
    if body.user_id == access.project.owner_id:
        raise OwnerRowProtected("The user already owns this project")
    # Cached tasks carry their project's owner, who is told of their status changes.
    effects_of(session).invalidate(project_scope(project_id), project_tasks_scope(project_id))
    previous = access.project.owner_id
    for user_id, role in ((previous, MemberRole.editor), (body.user_id, MemberRole.owner)):
        await execute(
            session,
            sa.update(MEMBER)
            .where(MEMBER.c.project_id == project_id, MEMBER.c.user_id == user_id)
            .values(role=role),
        )
    updated = await execute(
        session,
        sa.update(PROJECT)
        .where(PROJECT.c.id == project_id)
        .values(owner_id=body.user_id, version=PROJECT.c.version + 1, updated_at=utcnow())
        .returning(*columns_of(Project, ProjectRead)),
    )
    project = ProjectRead.model_validate(updated.mappings().one())
    await commit(session)
    return project


async def add_owner(session: AsyncSession, project_id: int, owner_id: int) -> None:
    """The owner's row of a new project, in the transaction that creates it. Flushes."""
    session.add(ProjectMember(project_id=project_id, user_id=owner_id, role=MemberRole.owner))
    await session.flush()
