"""Loaders for task routes: visible to the caller (404 otherwise), managed by them (403)."""

from typing import Annotated

from fastapi import Depends, Query
from starlette.requests import HTTPConnection

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.db import MAX_ID, IdPath, UnitOfWorkDep
from fasttrack.core.errors import Forbidden
from fasttrack.tasks import service as task_service
from fasttrack.tasks.exceptions import TaskNotFound
from fasttrack.tasks.models import Priority, TaskStatus, TaskView
from fasttrack.tasks.service import TaskFilters


async def get_visible_task(
    task_id: IdPath, user: CurrentUser, work: UnitOfWorkDep, connection: HTTPConnection
) -> TaskView:
    # Missing and invisible look the same (404): nothing leaks about other people's projects.
    task = await task_service.get_visible(
        work, task_id, viewer=user, cache=connection.app.state.task_cache
    )
    if task is None:
        raise TaskNotFound()
    return task


VisibleTask = Annotated[TaskView, Depends(get_visible_task)]


async def get_managed_task(task: VisibleTask, user: CurrentUser) -> TaskView:
    # Only reached for a task the caller can see, so refusing here is a 403.
    if not task_service.can_manage(task, user):
        raise Forbidden("Only the project owner or an admin may do this")
    return task


ManagedTask = Annotated[TaskView, Depends(get_managed_task)]


async def get_task_filters(
    status: Annotated[TaskStatus | None, Query()] = None,
    priority: Annotated[Priority | None, Query()] = None,
    assignee_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> TaskFilters:
    return TaskFilters(status=status, priority=priority, assignee_id=assignee_id)


TaskFiltersDep = Annotated[TaskFilters, Depends(get_task_filters)]
