"""Tasks: visibility, the status workflow, assignment and field rules (SPEC §4, §5 Tasks)."""

from dataclasses import dataclass, field
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, contains_eager
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from fasttrack.core.db import utcnow
from fasttrack.core.errors import Forbidden
from fasttrack.core.pagination import CursorParams, PageResult, paginate
from fasttrack.core.versioning import IfMatch, save_versioned
from fasttrack.notifications import service as notification_service
from fasttrack.notifications.models import Notification
from fasttrack.projects import service as project_service
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import Project
from fasttrack.tasks.exceptions import InvalidAssignee, InvalidTransition
from fasttrack.tasks.models import Priority, Task, TaskCreate, TaskStatus, TaskUpdate
from fasttrack.users.models import Role, User

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


@dataclass(frozen=True, slots=True)
class TaskFilters:
    status: TaskStatus | None = None
    priority: Priority | None = None
    assignee_id: int | None = None

    def apply(self, statement: SelectOfScalar[Task]) -> SelectOfScalar[Task]:
        if self.status is not None:
            statement = statement.where(Task.status == self.status)
        if self.priority is not None:
            statement = statement.where(Task.priority == self.priority)
        if self.assignee_id is not None:
            statement = statement.where(Task.assignee_id == self.assignee_id)
        return statement


@dataclass(frozen=True, slots=True)
class TaskChange:
    """What a create or update did, for the work that follows the commit."""

    task: Task
    changed: frozenset[str]
    previous: dict[str, Any] = field(default_factory=dict)
    new_assignee: User | None = None
    created: bool = False
    notifications: list[Notification] = field(default_factory=list)

    @property
    def moves_counts(self) -> bool:
        return self.created or "status" in self.changed


def visible_to(viewer: User) -> sa.ColumnElement[bool] | None:
    """The condition on (task JOIN project) for tasks `viewer` may see; None = all."""
    if viewer.role is Role.admin:
        return None
    return sa.or_(col(Project.owner_id) == viewer.id, col(Task.assignee_id) == viewer.id)


def visible_tasks(viewer: User) -> SelectOfScalar[Task]:
    """Tasks of projects `viewer` owns, tasks assigned to them, or all for an admin."""
    statement = select(Task).join(TASK_PROJECT).options(contains_eager(TASK_PROJECT))
    condition = visible_to(viewer)
    return statement if condition is None else statement.where(condition)


def can_manage(task: Task, user: User) -> bool:
    return project_service.can_manage(task.project, user)


async def get_visible(session: AsyncSession, task_id: int, *, viewer: User) -> Task | None:
    return (await session.exec(visible_tasks(viewer).where(Task.id == task_id))).first()


async def list_project_tasks(
    session: AsyncSession, project: Project, params: CursorParams, *, filters: TaskFilters
) -> PageResult[Task]:
    statement = filters.apply(select(Task).where(Task.project_id == project.id))
    return await paginate(session, statement, params, key=col(Task.id), descending=True)


async def list_assigned_tasks(
    session: AsyncSession, user: User, params: CursorParams, *, filters: TaskFilters
) -> PageResult[Task]:
    statement = filters.apply(select(Task).where(Task.assignee_id == user.id))
    return await paginate(session, statement, params, key=col(Task.id), descending=True)


async def _assignable_user(session: AsyncSession, user_id: int | None) -> User | None:
    if user_id is None:
        return None
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise InvalidAssignee()
    return user


async def create(
    session: AsyncSession, project: Project, body: TaskCreate, *, actor: User
) -> TaskChange:
    assignee = await _assignable_user(session, body.assignee_id)
    task = Task.model_validate(
        body,
        update={
            "project_id": project.id,
            "completed_at": utcnow() if body.status is TaskStatus.done else None,
        },
    )
    task.project = project
    session.add(task)
    try:
        await session.flush()
    except IntegrityError:
        # The project was deleted after this request loaded it; the foreign key refuses
        # the orphan. (Users are never deleted, only deactivated, so it is not the assignee.)
        await session.rollback()
        raise ProjectNotFound() from None
    notifications = _notify_assignment(session, task, assignee, actor=actor)
    await session.commit()
    return TaskChange(
        task=task,
        changed=frozenset(body.model_fields_set),
        new_assignee=assignee,
        created=True,
        notifications=notifications,
    )


def _notify_assignment(
    session: AsyncSession, task: Task, assignee: User | None, *, actor: User
) -> list[Notification]:
    if assignee is None:
        return []
    assert assignee.id is not None
    return notification_service.task_assigned(
        session,
        task_id=task.id,
        task_title=task.title,
        project_id=task.project_id,
        project_name=task.project.name,
        assignee_id=assignee.id,
        actor=actor,
    )


async def update(
    session: AsyncSession,
    task: Task,
    changes: TaskUpdate,
    *,
    actor: User,
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

    async def apply() -> None:
        changed = {name: value for name, value in requested.items() if getattr(task, name) != value}
        previous = {name: getattr(task, name) for name in changed}
        new_status = changed.get("status")
        if new_status is not None and (task.status, new_status) not in ALLOWED_MOVES:
            raise InvalidTransition(f"A task cannot move from {task.status} to {new_status}")
        assignee = (
            await _assignable_user(session, changed["assignee_id"])
            if "assignee_id" in changed
            else None
        )
        if new_status is not None:
            task.completed_at = utcnow() if new_status is TaskStatus.done else None
        if changed:
            task.sqlmodel_update(changed)
            task.updated_at = utcnow()
            session.add(task)
        # Written in the same transaction as the change: both commit, or neither.
        notifications = _notify_assignment(session, task, assignee, actor=actor)
        if new_status is not None:
            notifications += notification_service.status_changed(
                session,
                task_id=task.id,
                task_title=task.title,
                old=previous["status"],
                new=new_status,
                recipients=[task.project.owner_id, task.assignee_id],
                actor=actor,
            )
        outcome.update(
            changed=frozenset(changed),
            previous=previous,
            new_assignee=assignee,
            notifications=notifications,
        )

    await save_versioned(session, task, if_match, apply)
    return TaskChange(task=task, **outcome)


async def delete(session: AsyncSession, task: Task) -> None:
    await session.exec(sa.delete(Task).where(col(Task.id) == task.id))
    await session.commit()
