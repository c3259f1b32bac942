"""Comments (SPEC §5 Comments)."""

from fastapi import APIRouter, Request, Response, status

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.comments import service as comment_service
from fasttrack.comments.dependencies import DeletableComment, VisibleComment
from fasttrack.comments.models import CommentCreate, CommentRead
from fasttrack.core.db import SessionDep, UnitOfWorkRoute
from fasttrack.core.errors import problem_responses
from fasttrack.core.pagination import Page, PageParams, PageResult
from fasttrack.core.routing import url_for
from fasttrack.tasks.dependencies import VisibleTask

router = APIRouter(tags=["comments"], route_class=UnitOfWorkRoute)


@router.post(
    "/tasks/{task_id}/comments",
    status_code=status.HTTP_201_CREATED,
    response_model=CommentRead,
    responses=problem_responses(401, 404, 422),
)
async def create_comment(
    task: VisibleTask,
    body: CommentCreate,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    response: Response,
) -> CommentRead:
    """Comment on a task; anyone who can see the task may. The project owner and the
    assignee are notified (never the author)."""
    comment = await comment_service.create(session, task, body, author=user)
    response.headers["Location"] = url_for(request, "get_comment", comment_id=comment.id)
    return comment


@router.get(
    "/tasks/{task_id}/comments",
    response_model=Page[CommentRead],
    responses=problem_responses(401, 404, 422),
)
async def list_comments(
    task: VisibleTask, page: PageParams, session: SessionDep
) -> PageResult[CommentRead]:
    """A task's comments, oldest first, for anyone who can see the task."""
    return await comment_service.list_comments(session, task.id, page)


@router.get(
    "/comments/{comment_id}",
    response_model=CommentRead,
    responses=problem_responses(401, 404, 422),
)
async def get_comment(comment: VisibleComment) -> CommentRead:
    """One comment, for anyone who can see its task."""
    return comment


@router.delete(
    "/comments/{comment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_comment(comment: DeletableComment, user: CurrentUser, session: SessionDep) -> None:
    """Delete a comment (its author or an admin; others who can see the task get 403)."""
    await comment_service.delete(session, comment, actor=user)
