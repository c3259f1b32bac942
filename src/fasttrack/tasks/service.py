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
from fasttrack.projects import service as project_service
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import Project, ProjectSummary
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
from fasttrack.users.models import Role, UserRead

ALLOWED_MOVES: Final = frozenset(
    {
        (TaskStatus.todo, TaskStatus.in_progress),
        (TaskStatus.in_progress, TaskStatus.todo),
        (TaskStatus.in_progress, TaskStatus.done),
        (TaskStatus.done, TaskStatus.in_progress),
    }
)
ASSIGNEE_FIELDS: Final = frozenset({"status"})

TASK: Final = table_of(Task)
PROJECT: Final = table_of(Project)
# On (task JOIN project): the tasks the caller may see, those of projects they own and
# those assigned to them, or all of them for an admin.
VISIBLE_TO_VIEWER: Final = sa.or_(
    user_service.VIEWER_IS_ADMIN,
    PROJECT.c.owner_id == user_service.VIEWER_ID,
    TASK.c.assignee_id == user_service.VIEWER_ID,
)
_VIEW_COLUMNS: Final = columns_of(Task, TaskView)
_INSERT: Final = InsertReturning(Task, returning=_VIEW_COLUMNS)
_TASK: Final = (
    sa.select(*_VIEW_COLUMNS, PROJECT.c.owner_id.label("project_owner_id"))
    .join(PROJECT, PROJECT.c.id == TASK.c.project_id)
    .where(TASK.c.id == sa.bindparam("task_id"))
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


def can_see(task: TaskView, viewer: UserRead) -> bool:
    return viewer.role is Role.admin or viewer.id in (task.project_owner_id, task.assignee_id)


def can_manage(task: TaskView, user: UserRead) -> bool:
    return user.role is Role.admin or task.project_owner_id == user.id


async def get_visible(
    work: UnitOfWork, task_id: int, *, viewer: UserRead, cache: TaskCache
) -> TaskView | None:
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
    return task if task is not None and can_see(task, viewer) else None


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


async def _assignable_user(session: AsyncSession, user_id: int | None) -> UserRead | None:
    if user_id is None:
        return None
    user = await user_service.get(session, user_id)
    if user is None or not user.is_active:
        raise InvalidAssignee()
    return user


async def create(
    work: UnitOfWork,
    project: ProjectSummary,
    body: TaskCreate,
    *,
    actor: UserRead,
    mailer: EmailSender,
) -> TaskView:
    """Insert a task, and notify its assignee in the same transaction. The project's
    counts follow in that transaction too (a trigger of the task table). Without an
    assignee the insert is the only statement."""
    work.effects.invalidate(project_tasks_scope(project.id))
    session = await work.session(single_statement=body.assignee_id is None)
    assignee = await _assignable_user(session, body.assignee_id)
    completed_at = utcnow() if body.status is TaskStatus.done else None
    try:
        row = await _INSERT(
            session, **body.model_dump(), project_id=project.id, completed_at=completed_at
        )
    except IntegrityError:
        # The project was deleted after this request loaded it; the foreign key refuses
        # the orphan. (Users are never deleted, only deactivated, so it is not the assignee.)
        await session.rollback()
        raise ProjectNotFound() from None
    task = TaskView.model_validate({**row, "project_owner_id": project.owner_id})
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

    The owner and admins may change any field; an assignee only `status` (403 for any
    other field sent). Both are decided on the project and task rows as they stand under
    the write's locks: a task reassigned meanwhile is no longer the caller's (404). Status
    moves follow ALLOWED_MOVES (409 otherwise, nothing changed); setting the current
    status again is a no-op.
    """
    requested = changes.model_dump(exclude_unset=True)
    project = await project_service.lock(session, task.project_id)
    if project is None:
        raise TaskNotFound()
    manages = actor.role is Role.admin or project.owner_id == actor.id
    effects_of(session).invalidate(project_tasks_scope(task.project_id))

    def authorize(row: Task) -> None:
        if manages:
            return
        if row.assignee_id != actor.id:
            raise TaskNotFound()
        if requested.keys() - ASSIGNEE_FIELDS:
            raise Forbidden("An assignee may only change the status of a task")

    async def apply(row: Task) -> None:
        changed = {name: value for name, value in requested.items() if getattr(row, name) != value}
        new_status = changed.get("status")
        if new_status is not None and (row.status, new_status) not in ALLOWED_MOVES:
            raise InvalidTransition(f"A task cannot move from {row.status} to {new_status}")
        assignee = (
            await _assignable_user(session, changed["assignee_id"])
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
    return TaskView.model_validate({**row.model_dump(), "project_owner_id": project.owner_id})


async def delete(session: AsyncSession, task: TaskView, *, actor: UserRead) -> None:
    """Delete a task (its project's owner or an admin, as the locked project row says)."""
    project = await project_service.lock(session, task.project_id)
    if project is None:
        raise TaskNotFound()
    if not (actor.role is Role.admin or project.owner_id == actor.id):
        raise Forbidden("Only the project owner or an admin may do this")
    effects_of(session).invalidate(project_tasks_scope(task.project_id))
    await execute(session, sa.delete(TASK).where(TASK.c.id == task.id))
    await commit(session)
