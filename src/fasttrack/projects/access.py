"""What a user may do in a project: the one place that answers it (SPEC §11).

Access is the caller's membership role in the project, or admin. Reads take it from a
validated cache (core.cache); a write takes it again from the database under the lock
of the project's row, which every change of a project's members or tasks takes first,
so the role a write is decided on cannot change before it commits.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.cache import ValidatedCache, project_members_scope, project_scope
from fasttrack.core.db import UnitOfWork, execute, table_of
from fasttrack.core.errors import Forbidden
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import MemberRole, Project, ProjectMember, ProjectSummary
from fasttrack.users.models import Role, UserRead

PROJECT: Final = table_of(Project)
MEMBER: Final = table_of(ProjectMember)


class Action(StrEnum):
    """What a route does in a project, in the words of SPEC §11's table."""

    read = "read"  # the project, its tasks, comments, members, labels, activity
    comment = "comment"  # comment; delete one's own comments
    edit = "edit"  # create, update, delete tasks (any field) and labels
    manage = "manage"  # PATCH or DELETE the project; members; transfer; webhooks


# SPEC §11's table; admins may do everything in every project. Changing the status of a
# task assigned to oneself is `read` plus the assignee rule (tasks.service).
ALLOWED: Final = {
    MemberRole.viewer: frozenset({Action.read, Action.comment}),
    MemberRole.editor: frozenset({Action.read, Action.comment, Action.edit}),
    MemberRole.owner: frozenset(Action),
}
DENIED: Final = {
    Action.edit: "Viewers may not create, change or delete this project's tasks",
    Action.manage: "Only the project's owner or an admin may do this",
}

_ACCESS: Final = (
    sa.select(PROJECT.c.id, PROJECT.c.name, PROJECT.c.owner_id, MEMBER.c.role)
    .select_from(
        PROJECT.outerjoin(
            MEMBER,
            sa.and_(
                MEMBER.c.project_id == PROJECT.c.id,
                MEMBER.c.user_id == sa.bindparam("user_id"),
            ),
        )
    )
    .where(PROJECT.c.id == sa.bindparam("project_id"))
)
# FOR NO KEY UPDATE OF project: new tasks and members may still reference the row.
_LOCKED_ACCESS: Final = _ACCESS.with_for_update(key_share=True, of=PROJECT)


_LOCK: Final = (
    sa.select(PROJECT.c.id)
    .where(PROJECT.c.id == sa.bindparam("project_id"))
    .with_for_update(key_share=True)
)


@dataclass(frozen=True, slots=True)
class ProjectAccess:
    """A project as one user may use it: their role in it, or admin."""

    project: ProjectSummary
    role: MemberRole | None
    is_admin: bool

    def allows(self, action: Action) -> bool:
        return self.is_admin or (self.role is not None and action in ALLOWED[self.role])

    def require(self, action: Action) -> None:
        if not self.allows(action):
            raise Forbidden(DENIED.get(action))


# By project and user: every change of the project or of its members moves its scopes.
AccessCache = ValidatedCache[tuple[int, int], "_Membership"]


@dataclass(frozen=True, slots=True)
class _Membership:
    project: ProjectSummary
    role: MemberRole | None


def _access(membership: _Membership | None, user: UserRead) -> ProjectAccess | None:
    """None for a project that is missing, or that the user may not see at all."""
    if membership is None:
        return None
    is_admin = user.role is Role.admin
    if membership.role is None and not is_admin:
        return None
    return ProjectAccess(membership.project, membership.role, is_admin)


async def _membership(
    session: AsyncSession,
    statement: sa.Select[tuple[int, str, int, MemberRole | None]],
    project_id: int,
    user_id: int,
) -> _Membership | None:
    parameters = {"project_id": project_id, "user_id": user_id}
    row = (await execute(session, statement, parameters)).first()
    if row is None:
        return None
    summary = ProjectSummary(id=row.id, name=row.name, owner_id=row.owner_id)
    return _Membership(summary, None if row.role is None else MemberRole(row.role))


async def get_access(
    work: UnitOfWork, project_id: int, user: UserRead, *, cache: AccessCache
) -> ProjectAccess | None:
    """The user's access to the project, for a read: None if it does not exist for them."""

    async def read() -> _Membership | None:
        return await _membership(await work.session(), _ACCESS, project_id, user.id)

    membership = await cache.get_or_read(
        (project_id, user.id),
        read,
        scopes=[project_scope(project_id), project_members_scope(project_id)],
        may_wait=work.may_wait,
    )
    return _access(membership, user)


async def lock_access(session: AsyncSession, project_id: int, user: UserRead) -> ProjectAccess:
    """The user's access as it stands under the lock of the project's row, for a write;
    404 if the project is gone or no longer theirs to see."""
    access = _access(await _membership(session, _LOCKED_ACCESS, project_id, user.id), user)
    if access is None:
        raise ProjectNotFound()
    return access


async def lock(session: AsyncSession, project_id: int) -> bool:
    """Lock the project's row for the rest of the transaction; False if it is gone.

    Every change of a project's tasks or members locks this row first (PostgreSQL; on
    SQLite the writer holds the whole database): the counts trigger updates it in the
    task change's transaction anyway, so taking it first cannot deadlock with a project
    deletion cascading to the tasks; and the rules of a change are decided under it.
    """
    return (await execute(session, _LOCK, {"project_id": project_id})).first() is not None
