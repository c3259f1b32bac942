"""Tasks: visibility, the status workflow, assignment and field rules (SPEC §4, §5 Tasks)."""

from dataclasses import asdict, dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.cache import ValidatedCache, project_tasks_scope
from fasttrack.core.db import (
    InsertReturning,
    UnitOfWork,
    columns_of,
    commit,
    effects_of,
    execute,
    table_of,
    utcnow,
)
from fasttrack.core.errors import Forbidden
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.core.versioning import IfMatch, save_versioned
from fasttrack.notifications import service as notification_service
from fasttrack.notifications.email import EmailSender, assignment_email
from fasttrack.projects import access as project_access
from fasttrack.projects.access import ALLOWED, MEMBER, Action, ProjectAccess
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import ProjectSummary
from fasttrack.tasks.exceptions import InvalidAssignee, InvalidTransition, TaskNotFound
from fasttrack.tasks.models import (
    Priority,
    Task,
    TaskCreate,
    TaskRead,
    TaskStatus,
    TaskUpdate,
    TaskView,
)
from fasttrack.users import service as user_service
from fasttrack.users.models import Role, User, UserRead

USER: Final = table_of(User)

ALLOWED_MOVES: Final = frozenset(
    {
        (TaskStatus.todo, TaskStatus.in_progress),
        (TaskStatus.in_progress, TaskStatus.todo),
        (TaskStatus.in_progress, TaskStatus.done),
        (TaskStatus.done, TaskStatus.in_progress),
    }
)
ASSIGNEE_FIELDS: Final = frozenset({"status"})
ALLOWED_TO_EDIT: Final = [role for role, actions in ALLOWED.items() if Action.edit in actions]

TASK: Final = table_of(Task)
# The tasks the caller may see: those of the projects they are a member of, or all of
# them for an admin.
VISIBLE_TO_VIEWER: Final = sa.or_(
    user_service.VIEWER_IS_ADMIN,
    sa.select(MEMBER.c.role)
    .where(MEMBER.c.project_id == TASK.c.project_id, MEMBER.c.user_id == user_service.VIEWER_ID)
    .exists(),
)
_VIEW_COLUMNS: Final = columns_of(Task, TaskView)
# A task goes in only if its creator may edit the project's tasks, decided in the INSERT.
_MAY_EDIT: Final = sa.or_(
    sa.bindparam("actor_is_admin", type_=sa.Boolean),
    sa.select(MEMBER.c.role)
    .where(
        MEMBER.c.project_id == sa.bindparam("project_id"),
        MEMBER.c.user_id == sa.bindparam("actor_id"),
        MEMBER.c.role.in_([role.value for role in ALLOWED_TO_EDIT]),
    )
    .exists(),
)
_INSERT: Final = InsertReturning(Task, returning=_VIEW_COLUMNS, where=_MAY_EDIT)
_TASK: Final = sa.select(*_VIEW_COLUMNS).where(TASK.c.id == sa.bindparam("task_id"))
_IS_ACTIVE_MEMBER: Final = (
    sa.select(
        USER.c.id,
        USER.c.email,
        USER.c.display_name,
        USER.c.role,
        USER.c.is_active,
        USER.c.created_at,
        USER.c.updated_at,
    )
    .join(MEMBER, MEMBER.c.user_id == USER.c.id)
    .where(
        MEMBER.c.project_id == sa.bindparam("project_id"),
        USER.c.id == sa.bindparam("user_id"),
        USER.c.is_active.is_(True),
    )
)
_TASKS: Final = sa.select(*columns_of(Task, TaskRead))
_FILTERS: Final = {
    "status": TASK.c.status,
    "priority": TASK.c.priority,
    "assignee_id": TASK.c.assignee_id,
}
_PROJECT_TASKS: Final = KeysetList(
    _TASKS.where(TASK.c.project_id == sa.bindparam("project_id")),
    TaskRead,
    key=TASK.c.id,
    descending=True,
    filters=_FILTERS,
)
_ASSIGNED_TASKS: Final = KeysetList(
    _TASKS.where(TASK.c.assignee_id == sa.bindparam("user_id")),
    TaskRead,
    key=TASK.c.id,
    descending=True,
    filters=_FILTERS,
)

# Tasks by id, and pages of a project's tasks by project, filters, cursor and size,
# validated (see core.cache): every task change moves the scope of its project's tasks.
TaskCache = ValidatedCache[int, TaskView]
TaskPageCache = ValidatedCache[tuple[int, "TaskFilters", str | None, int], PageResult[TaskRead]]


@dataclass(frozen=True, slots=True)
class TaskFilters:
    status: TaskStatus | None = None
    priority: Priority | None = None
    assignee_id: int | None = None


@dataclass(frozen=True, slots=True)
class TaskInProject:
    """A task, with what the caller may do in its project."""

    task: TaskView
    access: ProjectAccess


async def get_visible(
    work: UnitOfWork,
    task_id: int,
    *,
    viewer: UserRead,
    cache: TaskCache,
    access_cache: project_access.AccessCache,
) -> TaskInProject | None:
    """The task and the viewer's access to its project; None if either is not there
    for them (a task of a project they are not a member of)."""

    async def read() -> TaskView | None:
        session = await work.session()
        row = (await execute(session, _TASK, {"task_id": task_id})).mappings().first()
        return None if row is None else TaskView.model_validate(row)

    task = await cache.get_or_read(
        task_id,
        read,
        scopes=lambda found: [project_tasks_scope(found.project_id)],
        may_wait=work.may_wait,
    )
    if task is None:
        return None
    access = await project_access.get_access(work, task.project_id, viewer, cache=access_cache)
    return None if access is None else TaskInProject(task, access)


async def list_project_tasks(
    work: UnitOfWork,
    project_id: int,
    params: CursorParams,
    *,
    filters: TaskFilters,
    cache: TaskPageCache,
) -> PageResult[TaskRead]:
    """One page of a project's tasks; pages are cached like the tasks themselves."""

    async def read() -> PageResult[TaskRead]:
        session = await work.session()
        return await _PROJECT_TASKS.page(session, params, project_id=project_id, **asdict(filters))

    key = (project_id, filters, params.cursor, params.limit)
    page = await cache.get_or_read(
        key, read, scopes=[project_tasks_scope(project_id)], may_wait=work.may_wait
    )
    assert page is not None  # a page is never missing, at most empty
    return page


async def list_assigned_tasks(
    session: AsyncSession, user_id: int, params: CursorParams, *, filters: TaskFilters
) -> PageResult[TaskRead]:
    return await _ASSIGNED_TASKS.page(session, params, user_id=user_id, **asdict(filters))


async def _assignable_user(
    session: AsyncSession, project_id: int, user_id: int | None
) -> UserRead | None:
    """The new assignee: an active member of the project (422 otherwise)."""
    if user_id is None:
        return None
    parameters = {"project_id": project_id, "user_id": user_id}
    row = (await execute(session, _IS_ACTIVE_MEMBER, parameters)).mappings().first()
    if row is None:
        raise InvalidAssignee()
    return UserRead.model_validate(row)


async def create(
    work: UnitOfWork,
    project: ProjectSummary,
    body: TaskCreate,
    *,
    actor: UserRead,
    mailer: EmailSender,
) -> TaskView:
    """Insert a task (an editor, the owner or an admin), and notify its assignee in the
    same transaction. The project's counts follow in that transaction too (a trigger of
    the task table). Without an assignee the insert is the only statement, and the role
    is decided in it; with one, on the project's locked row."""
    work.effects.invalidate(project_tasks_scope(project.id))
    session = await work.session(single_statement=body.assignee_id is None)
    assignee = None
    if body.assignee_id is not None:
        (await project_access.lock_access(session, project.id, actor)).require(Action.edit)
        assignee = await _assignable_user(session, project.id, body.assignee_id)
    completed_at = utcnow() if body.status is TaskStatus.done else None
    condition = {"actor_id": actor.id, "actor_is_admin": actor.role is Role.admin}
    try:
        row = await _INSERT.where_allowed(
            session,
            condition,
            **body.model_dump(),
            project_id=project.id,
            completed_at=completed_at,
        )
    except IntegrityError:
        # The project was deleted after this request loaded it; the foreign key refuses
        # the orphan. (Users are never deleted, only deactivated, so it is not the assignee.)
        await session.rollback()
        raise ProjectNotFound() from None
    if row is None:
        # Between the request's check and this INSERT the project went away, or the
        # creator left it or lost the role: the project as they could use it is gone.
        raise ProjectNotFound()
    task = TaskView.model_validate(row)
    await _assign(session, task, project.name, assignee, actor=actor, mailer=mailer)
    await work.commit()
    return task


async def _assign(
    session: AsyncSession,
    task: Task | TaskView,
    project_name: str,
    assignee: UserRead | None,
    *,
    actor: UserRead,
    mailer: EmailSender,
) -> None:
    """Tell a new assignee: in their inbox (this transaction), then by e-mail once it
    has committed."""
    if assignee is None:
        return
    assert task.id is not None
    await notification_service.task_assigned(
        session,
        task_id=task.id,
        task_title=task.title,
        project_id=task.project_id,
        project_name=project_name,
        assignee_id=assignee.id,
        actor=actor,
    )

    async def send_email() -> None:
        message = assignment_email(
            to=assignee.email,
            assignee_name=assignee.display_name,
            task_title=task.title,
            project_name=project_name,
            assigned_by=actor.display_name,
        )
        await mailer.send(message)

    effects_of(session).run_after("assignment-email", send_email)


async def update(
    session: AsyncSession,
    task: TaskView,
    changes: TaskUpdate,
    *,
    actor: UserRead,
    if_match: IfMatch | None,
    mailer: EmailSender,
) -> TaskView:
    """Apply a PATCH under the workflow and field rules.

    Editors, the owner and admins may change any field; any other member only the
    `status` of a task assigned to them (403 otherwise). Both are decided on the project
    and task rows as they stand under the write's locks: a member removed meanwhile gets
    404, a task reassigned meanwhile is no longer theirs (403). Status moves follow
    ALLOWED_MOVES (409 otherwise, nothing changed); setting the current status again is
    a no-op.
    """
    requested = changes.model_dump(exclude_unset=True)
    access = await project_access.lock_access(session, task.project_id, actor)
    project = access.project
    effects_of(session).invalidate(project_tasks_scope(task.project_id))

    def authorize(row: Task) -> None:
        if access.allows(Action.edit):
            return
        if row.assignee_id != actor.id:
            raise Forbidden("Viewers may change only the status of a task assigned to them")
        if requested.keys() - ASSIGNEE_FIELDS:
            raise Forbidden("An assignee who is a viewer may only change the status")

    async def apply(row: Task) -> None:
        changed = {name: value for name, value in requested.items() if getattr(row, name) != value}
        new_status = changed.get("status")
        if new_status is not None and (row.status, new_status) not in ALLOWED_MOVES:
            raise InvalidTransition(f"A task cannot move from {row.status} to {new_status}")
        assignee = (
            await _assignable_user(session, row.project_id, changed["assignee_id"])
            if "assignee_id" in changed
            else None
        )
        old_status = row.status
        if new_status is not None:
            row.completed_at = utcnow() if new_status is TaskStatus.done else None
        if changed:
            row.sqlmodel_update(changed)
            row.updated_at = utcnow()
            session.add(row)
        # Written in the same transaction as the change: both commit, or neither.
        await _assign(session, row, project.name, assignee, actor=actor, mailer=mailer)
        if new_status is not None:
            await notification_service.status_changed(
                session,
                task_id=row.id,
                task_title=row.title,
                old=old_status,
                new=new_status,
                recipients=[project.owner_id, row.assignee_id],
                actor=actor,
            )

    row = await save_versioned(
        session, Task, task.id, if_match, apply, missing=TaskNotFound, authorize=authorize
    )
    return TaskView.model_validate(row.model_dump())


async def delete(session: AsyncSession, task: TaskView, *, actor: UserRead) -> None:
    """Delete a task (an editor, the owner or an admin, as the locked project row says)."""
    access = await project_access.lock_access(session, task.project_id, actor)
    access.require(Action.edit)
    effects_of(session).invalidate(project_tasks_scope(task.project_id))
    await execute(session, sa.delete(TASK).where(TASK.c.id == task.id))
    await commit(session)
