"""Tasks: visibility, the status workflow, assignment and field rules (SPEC §4, §5 Tasks)."""

from dataclasses import asdict, dataclass, field
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, joinedload
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.db import statements, utcnow
from fasttrack.core.errors import Forbidden
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.core.prepared import PreparedInsert, PreparedQuery, QueryRunner, Row, columns_of
from fasttrack.core.versioning import IfMatch, save_versioned
from fasttrack.notifications import service as notification_service
from fasttrack.notifications.models import StoredNotification
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import Project, ProjectRead
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
# SQLModel types a relationship attribute as its target model; loader options want the
# instrumented attribute it really is.
TASK_PROJECT: Final = cast("QueryableAttribute[Project]", Task.project)

# On (task JOIN project): the tasks the caller may see, those of projects they own and
# those assigned to them, or all of them for an admin.
VISIBLE_TO_VIEWER: Final = sa.or_(
    user_service.VIEWER_IS_ADMIN,
    col(Project.owner_id) == user_service.VIEWER_ID,
    col(Task.assignee_id) == user_service.VIEWER_ID,
)
_VISIBLE: Final = PreparedQuery(
    sa.select(*columns_of(Task, TaskView), col(Project.owner_id).label("project_owner_id"))
    .join(Project, col(Project.id) == Task.project_id)
    .where(col(Task.id) == sa.bindparam("task_id"), VISIBLE_TO_VIEWER)
)
_INSERT: Final = PreparedInsert(Task, returning=columns_of(Task, TaskView))
_TASKS: Final = sa.select(*columns_of(Task, TaskRead))
_FILTERS: Final = {
    "status": col(Task.status),
    "priority": col(Task.priority),
    "assignee_id": col(Task.assignee_id),
}
_PROJECT_TASKS: Final = KeysetList(
    _TASKS.where(col(Task.project_id) == sa.bindparam("project_id")),
    key=col(Task.id),
    descending=True,
    filters=_FILTERS,
)
_ASSIGNED_TASKS: Final = KeysetList(
    _TASKS.where(col(Task.assignee_id) == sa.bindparam("user_id")),
    key=col(Task.id),
    descending=True,
    filters=_FILTERS,
)


@dataclass(frozen=True, slots=True)
class TaskFilters:
    status: TaskStatus | None = None
    priority: Priority | None = None
    assignee_id: int | None = None


@dataclass(frozen=True, slots=True)
class TaskChange:
    """What a create or update did, for the work that follows the commit."""

    task: TaskView
    project_name: str
    changed: frozenset[str]
    previous: dict[str, Any] = field(default_factory=dict)
    new_assignee: UserRead | None = None
    created: bool = False
    notifications: list[StoredNotification] = field(default_factory=list)

    @property
    def moves_counts(self) -> bool:
        return self.created or "status" in self.changed


def can_manage(task: TaskView, user: UserRead) -> bool:
    return user.role is Role.admin or task.project_owner_id == user.id


async def get_visible(reads: QueryRunner, task_id: int, *, viewer: UserRead) -> TaskView | None:
    row = await reads.one_or_none(_VISIBLE, task_id=task_id, **user_service.as_viewer(viewer))
    return None if row is None else TaskView.model_validate(row)


async def list_project_tasks(
    reads: QueryRunner, project_id: int, params: CursorParams, *, filters: TaskFilters
) -> PageResult[Row]:
    return await _PROJECT_TASKS.page(reads, params, project_id=project_id, **asdict(filters))


async def list_assigned_tasks(
    reads: QueryRunner, user_id: int, params: CursorParams, *, filters: TaskFilters
) -> PageResult[Row]:
    return await _ASSIGNED_TASKS.page(reads, params, user_id=user_id, **asdict(filters))


async def _assignable_user(runner: QueryRunner, user_id: int | None) -> UserRead | None:
    if user_id is None:
        return None
    user = await user_service.get(runner, user_id)
    if user is None or not user.is_active:
        raise InvalidAssignee()
    return user


async def create(
    session: AsyncSession, project: ProjectRead, body: TaskCreate, *, actor: UserRead
) -> TaskChange:
    run = await statements(session)
    assignee = await _assignable_user(run, body.assignee_id)
    completed_at = utcnow() if body.status is TaskStatus.done else None
    try:
        row = await _INSERT.one(
            run, **body.model_dump(), project_id=project.id, completed_at=completed_at
        )
    except IntegrityError:
        # The project was deleted after this request loaded it; the foreign key refuses
        # the orphan. (Users are never deleted, only deactivated, so it is not the assignee.)
        await session.rollback()
        raise ProjectNotFound() from None
    task = TaskView.model_validate({**row, "project_owner_id": project.owner_id})
    notifications = await _notify_assignment(run, task, project.name, assignee, actor=actor)
    await session.commit()
    return TaskChange(
        task=task,
        project_name=project.name,
        changed=frozenset(body.model_fields_set),
        new_assignee=assignee,
        created=True,
        notifications=notifications,
    )


async def _notify_assignment(
    runner: QueryRunner,
    task: Task | TaskRead,
    project_name: str,
    assignee: UserRead | None,
    *,
    actor: UserRead,
) -> list[StoredNotification]:
    if assignee is None:
        return []
    return await notification_service.task_assigned(
        runner,
        task_id=task.id,
        task_title=task.title,
        project_id=task.project_id,
        project_name=project_name,
        assignee_id=assignee.id,
        actor=actor,
    )


async def update(
    session: AsyncSession,
    task: TaskView,
    changes: TaskUpdate,
    *,
    actor: UserRead,
    if_match: IfMatch | None,
) -> TaskChange:
    """Apply a PATCH under the workflow and field rules.

    The owner and admins may change any field; an assignee only `status` (403 for any
    other field sent). Status moves follow ALLOWED_MOVES (409 otherwise, nothing
    changed); setting the current status again is a no-op.
    """
    requested = changes.model_dump(exclude_unset=True)
    if not can_manage(task, actor) and requested.keys() - ASSIGNEE_FIELDS:
        raise Forbidden("An assignee may only change the status of a task")
    outcome: dict[str, Any] = {}

    async def apply(row: Task) -> None:
        run = await statements(session)
        changed = {name: value for name, value in requested.items() if getattr(row, name) != value}
        previous = {name: getattr(row, name) for name in changed}
        new_status = changed.get("status")
        if new_status is not None and (row.status, new_status) not in ALLOWED_MOVES:
            raise InvalidTransition(f"A task cannot move from {row.status} to {new_status}")
        assignee = (
            await _assignable_user(run, changed["assignee_id"])
            if "assignee_id" in changed
            else None
        )
        if new_status is not None:
            row.completed_at = utcnow() if new_status is TaskStatus.done else None
        if changed:
            row.sqlmodel_update(changed)
            row.updated_at = utcnow()
            session.add(row)
        # Written in the same transaction as the change: both commit, or neither.
        notifications = await _notify_assignment(run, row, row.project.name, assignee, actor=actor)
        if new_status is not None:
            notifications += await notification_service.status_changed(
                run,
                task_id=row.id,
                task_title=row.title,
                old=previous["status"],
                new=new_status,
                recipients=[row.project.owner_id, row.assignee_id],
                actor=actor,
            )
        outcome.update(
            project_name=row.project.name,
            changed=frozenset(changed),
            previous=previous,
            new_assignee=assignee,
            notifications=notifications,
        )

    load = [joinedload(TASK_PROJECT, innerjoin=True)]
    row = await save_versioned(
        session, Task, task.id, if_match, apply, missing=TaskNotFound, load=load
    )
    view = TaskView.model_validate({**row.model_dump(), "project_owner_id": row.project.owner_id})
    return TaskChange(task=view, **outcome)


async def delete(session: AsyncSession, task_id: int) -> None:
    await session.exec(sa.delete(Task).where(col(Task.id) == task_id))
    await session.commit()
