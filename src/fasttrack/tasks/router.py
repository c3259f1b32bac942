"""Tasks (SPEC §5 Tasks)."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response, status
from starlette.requests import HTTPConnection

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.background import BackgroundJobs
from fasttrack.core.cache import project_tasks_scope
from fasttrack.core.db import SessionDep, UnitOfWorkDep, UnitOfWorkRoute
from fasttrack.core.errors import problem_responses
from fasttrack.core.pagination import Page, PageParams, PageResult
from fasttrack.core.routing import url_for
from fasttrack.core.versioning import IfMatchDep, etag
from fasttrack.notifications.dependencies import Broadcast, BroadcastDep
from fasttrack.notifications.email import EmailSender, assignment_email
from fasttrack.projects.dependencies import VisibleProjectSummary
from fasttrack.tasks import service as task_service
from fasttrack.tasks.dependencies import ManagedTask, TaskFiltersDep, VisibleTask
from fasttrack.tasks.models import TaskCreate, TaskRead, TaskUpdate, TaskView
from fasttrack.tasks.service import TaskChange
from fasttrack.users.models import UserRead

router = APIRouter(tags=["tasks"], route_class=UnitOfWorkRoute)

ETAG_HEADER = {
    "ETag": {"description": "Version of the task, for `If-Match`.", "schema": {"type": "string"}}
}


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The work that follows a committed task change: tell every process its project
    (and so the task and the counts) changed, push the notifications, and schedule the
    assignment e-mail in the background."""

    broadcast: Broadcast
    jobs: BackgroundJobs
    email_sender: EmailSender

    async def __call__(self, change: TaskChange, *, actor: UserRead) -> None:
        task = change.task
        await self.broadcast.invalidation([project_tasks_scope(task.project_id)])
        await self.broadcast.notifications(change.notifications)
        if change.new_assignee is not None:
            message = assignment_email(
                to=change.new_assignee.email,
                assignee_name=change.new_assignee.display_name,
                task_title=task.title,
                project_name=change.project_name,
                assigned_by=actor.display_name,
            )
            self.jobs.add("assignment-email", self.email_sender.send, message)


async def get_follow_up(
    connection: HTTPConnection, tasks: BackgroundTasks, broadcast: BroadcastDep
) -> FollowUp:
    return FollowUp(
        broadcast=broadcast,
        jobs=BackgroundJobs(tasks),
        email_sender=connection.app.state.email_sender,
    )


FollowUpDep = Annotated[FollowUp, Depends(get_follow_up)]


@router.post(
    "/projects/{project_id}/tasks",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses={201: {"headers": ETAG_HEADER}, **problem_responses(401, 404, 422)},
)
async def create_task(
    project: VisibleProjectSummary,
    body: TaskCreate,
    user: CurrentUser,
    follow_up: FollowUpDep,
    request: Request,
    response: Response,
    work: UnitOfWorkDep,
) -> TaskView:
    """Create a task in a project (owner or admin). `assignee_id` must be an existing,
    active user (422 otherwise); the assignee is notified (`task_assigned`) and e-mailed."""
    change = await task_service.create(work, project, body, actor=user)
    await follow_up(change, actor=user)
    response.headers["Location"] = url_for(request, "get_task", task_id=change.task.id)
    response.headers["ETag"] = etag(change.task.version)
    return change.task


@router.get(
    "/projects/{project_id}/tasks",
    response_model=Page[TaskRead],
    responses=problem_responses(401, 404, 422),
)
async def list_project_tasks(
    project: VisibleProjectSummary,
    filters: TaskFiltersDep,
    page: PageParams,
    work: UnitOfWorkDep,
    connection: HTTPConnection,
) -> PageResult[TaskRead]:
    """A project's tasks, newest first (owner or admin), filtered by `status`,
    `priority` and `assignee_id`."""
    return await task_service.list_project_tasks(
        work, project.id, page, filters=filters, cache=connection.app.state.task_pages
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
    responses={200: {"headers": ETAG_HEADER}, **problem_responses(401, 404, 422)},
)
async def get_task(task: VisibleTask, response: Response) -> TaskView:
    """One task, for the project owner, the assignee or an admin (404 for anyone else)."""
    response.headers["ETag"] = etag(task.version)
    return task


@router.patch(
    "/tasks/{task_id}",
    response_model=TaskRead,
    responses={200: {"headers": ETAG_HEADER}, **problem_responses(401, 403, 404, 409, 412, 422)},
)
async def update_task(
    task: VisibleTask,
    changes: TaskUpdate,
    if_match: IfMatchDep,
    user: CurrentUser,
    session: SessionDep,
    follow_up: FollowUpDep,
    response: Response,
) -> TaskView:
    """Change a task. The owner and admins may change any field; the assignee only
    `status` (403 otherwise). Status moves: todo ↔ in_progress ↔ done (409
    `invalid_transition` otherwise, nothing changed). With `If-Match`, applies only if the
    task still has that ETag (412 `precondition_failed`). A new assignee is notified and
    e-mailed; a status change notifies the project owner and the assignee."""
    change = await task_service.update(session, task, changes, actor=user, if_match=if_match)
    await follow_up(change, actor=user)
    response.headers["ETag"] = etag(change.task.version)
    return change.task


@router.delete(
    "/tasks/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_task(task: ManagedTask, session: SessionDep, broadcast: BroadcastDep) -> None:
    """Delete a task and its comments (owner or admin; the assignee gets 403)."""
    await task_service.delete(session, task)
    await broadcast.invalidation([project_tasks_scope(task.project_id)])
