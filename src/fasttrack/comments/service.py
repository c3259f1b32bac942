"""Comments on tasks (SPEC §5 Comments)."""

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment, CommentCreate
from fasttrack.core.pagination import CursorParams, PageResult, paginate
from fasttrack.notifications import service as notification_service
from fasttrack.notifications.models import Notification
from fasttrack.projects.models import Project
from fasttrack.tasks import service as task_service
from fasttrack.tasks.exceptions import TaskNotFound
from fasttrack.tasks.models import Task
from fasttrack.users.models import Role, User


async def create(
    session: AsyncSession, task: Task, body: CommentCreate, *, author: User
) -> tuple[Comment, list[Notification]]:
    """Add a comment; the project owner and the assignee are notified in the same commit."""
    comment = Comment.model_validate(body, update={"task_id": task.id, "author_id": author.id})
    session.add(comment)
    try:
        await session.flush()
    except IntegrityError:
        # The task was deleted after this request loaded it; the foreign key refuses the
        # orphan.
        await session.rollback()
        raise TaskNotFound() from None
    notifications = notification_service.comment_added(
        session,
        task_id=task.id,
        comment_id=comment.id,
        recipients=[task.project.owner_id, task.assignee_id],
        actor=author,
    )
    await session.commit()
    return comment, notifications


async def list_comments(
    session: AsyncSession, task: Task, params: CursorParams
) -> PageResult[Comment]:
    statement = select(Comment).where(Comment.task_id == task.id)
    return await paginate(session, statement, params, key=col(Comment.id), descending=False)


async def get_visible(session: AsyncSession, comment_id: int, *, viewer: User) -> Comment | None:
    """The comment if `viewer` may see its task."""
    statement = (
        select(Comment)
        .join(Task, col(Task.id) == Comment.task_id)
        .join(Project, col(Project.id) == Task.project_id)
        .where(Comment.id == comment_id)
    )
    condition = task_service.visible_to(viewer)
    if condition is not None:
        statement = statement.where(condition)
    return (await session.exec(statement)).first()


def can_delete(comment: Comment, user: User) -> bool:
    return user.role is Role.admin or comment.author_id == user.id


async def delete(session: AsyncSession, comment: Comment) -> None:
    await session.exec(sa.delete(Comment).where(col(Comment.id) == comment.id))
    await session.commit()
