"""Tasks (SPEC §5 Tasks)."""

from fastapi import APIRouter, Request, Response, status
from starlette.requests import HTTPConnection

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.db import SessionDep, UnitOfWorkDep, UnitOfWorkRoute
from fasttrack.core.errors import problem_responses
from fasttrack.core.pagination import Page, PageParams, PageResult
from fasttrack.core.routing import url_for
from fasttrack.core.versioning import IfMatchDep, etag_responses, set_etag
from fasttrack.notifications.dependencies import EmailSenderDep
from fasttrack.projects.dependencies import EditableProject, ProjectAccessDep
from fasttrack.tasks import service as task_service
from fasttrack.tasks.dependencies import (
    ChangeableTask,
    EditableTask,
    TaskFiltersDep,
    VisibleTask,
)
from fasttrack.tasks.models import TaskCreate, TaskRead, TaskUpdate, TaskView

router = APIRouter(tags=["tasks"], route_class=UnitOfWorkRoute)


@router.post(
    "/projects/{project_id}/tasks",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses={**etag_responses("task", 201), **problem_responses(401, 403, 404, 422)},
)
async def create_task(
    access: EditableProject,
    body: TaskCreate,
    user: CurrentUser,
    mailer: EmailSenderDep,
    request: Request,
    response: Response,
    work: UnitOfWorkDep,
) -> TaskView:
    """Create a task in a project (editors, the owner, admins; viewers 403).
    `assignee_id` must be an active member of the project (422 otherwise); the assignee
    is notified (`task_assigned`) and e-mailed."""
    task = await task_service.create(work, access.project, body, actor=user, mailer=mailer)
    response.headers["Location"] = url_for(request, "get_task", task_id=task.id)
    set_etag(response, task.version)
    return task


@router.get(
    "/projects/{project_id}/tasks",
    response_model=Page[TaskRead],
    responses=problem_responses(401, 404, 422),
)
async def list_project_tasks(
    access: ProjectAccessDep,
    filters: TaskFiltersDep,
    page: PageParams,
    work: UnitOfWorkDep,
    connection: HTTPConnection,
) -> PageResult[TaskRead]:
    """A project's tasks, newest first (its members, admins), filtered by `status`,
    `priority` and `assignee_id`."""
    return await task_service.list_project_tasks(
        work, access.project.id, page, filters=filters, cache=connection.app.state.task_pages
    )


@router.get(
    "/users/me/tasks",
    response_model=Page[TaskRead],
    responses=problem_responses(401, 422),
)
async def list_my_tasks(
    user: CurrentUser, filters: TaskFiltersDep, page: PageParams, session: SessionDep
) -> PageResult[TaskRead]:
    """Tasks assigned to the caller across all projects, newest first, with the same
    filters as a project's task list."""
    return await task_service.list_assigned_tasks(session, user.id, page, filters=filters)


@router.get(
    "/tasks/{task_id}",
    response_model=TaskRead,
    responses={**etag_responses("task", 200), **problem_responses(401, 404, 422)},
)
async def get_task(task: VisibleTask, response: Response) -> TaskView:
    """One task, for the members of its project and admins (404 for anyone else)."""
    set_etag(response, task.version)
    return task


@router.patch(
    "/tasks/{task_id}",
    response_model=TaskRead,
    responses={
        **etag_responses("task", 200),
        **problem_responses(401, 403, 404, 409, 412, 422),
    },
)
async def update_task(
    task: ChangeableTask,
    changes: TaskUpdate,
    if_match: IfMatchDep,
    user: CurrentUser,
    session: SessionDep,
    mailer: EmailSenderDep,
    response: Response,
) -> TaskView:
    """Change a task. Editors, the owner and admins may change any field; a viewer only
    the `status` of a task assigned to them (403 otherwise). Status moves: todo ↔
    in_progress ↔ done (409 `invalid_transition` otherwise, nothing changed). With
    `If-Match`, applies only if the task still has that ETag (412 `precondition_failed`).
    A new assignee must be an active member (422) and is notified and e-mailed; a status
    change notifies the project owner and the assignee."""
    updated = await task_service.update(
        session, task, changes, actor=user, if_match=if_match, mailer=mailer
    )
    set_etag(response, updated.version)
    return updated


@router.delete(
    "/tasks/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_task(task: EditableTask, user: CurrentUser, session: SessionDep) -> None:
    """Delete a task and its comments (editors, the owner, admins; viewers 403)."""
    await task_service.delete(session, task, actor=user)
