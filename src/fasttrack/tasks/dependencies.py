"""Loaders for task routes: visible to the caller (404 otherwise), editable by them (403)."""

from typing import Annotated

from fastapi import Depends, Query
from starlette.requests import HTTPConnection

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.db import MAX_ID, IdPath, UnitOfWorkDep
from fasttrack.projects.access import Action
from fasttrack.tasks import service as task_service
from fasttrack.tasks.exceptions import TaskNotFound
from fasttrack.tasks.models import Priority, TaskStatus, TaskView
from fasttrack.tasks.service import TaskFilters, TaskInProject


async def get_task_in_project(
    task_id: IdPath, user: CurrentUser, work: UnitOfWorkDep, connection: HTTPConnection
) -> TaskInProject:
    # Missing and invisible look the same (404): nothing leaks about other people's projects.
    state = connection.app.state
    found = await task_service.get_visible(
        work, task_id, viewer=user, cache=state.task_cache, access_cache=state.project_access
    )
    if found is None:
        raise TaskNotFound()
    return found


TaskInProjectDep = Annotated[TaskInProject, Depends(get_task_in_project)]


async def get_visible_task(found: TaskInProjectDep) -> TaskView:
    return found.task


VisibleTask = Annotated[TaskView, Depends(get_visible_task)]


async def get_editable_task(found: TaskInProjectDep) -> TaskView:
    # Only reached for a task the caller can see, so refusing here is a 403.
    found.access.require(Action.edit)
    return found.task


EditableTask = Annotated[TaskView, Depends(get_editable_task)]


async def get_changeable_task(found: TaskInProjectDep, user: CurrentUser) -> TaskView:
    # Viewers may change only the status of a task assigned to them (the service checks
    # the fields, and everything again on the locked rows).
    if not found.access.allows(Action.edit) and found.task.assignee_id != user.id:
        found.access.require(Action.edit)
    return found.task


ChangeableTask = Annotated[TaskView, Depends(get_changeable_task)]


async def get_task_filters(
    status: Annotated[TaskStatus | None, Query()] = None,
    priority: Annotated[Priority | None, Query()] = None,
    assignee_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> TaskFilters:
    return TaskFilters(status=status, priority=priority, assignee_id=assignee_id)


TaskFiltersDep = Annotated[TaskFilters, Depends(get_task_filters)]
