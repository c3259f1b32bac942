"""Comments on tasks (SPEC §5 Comments)."""

from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment, CommentCreate, CommentRead
from fasttrack.core.db import statements
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.core.prepared import PreparedInsert, PreparedQuery, QueryRunner, Row, columns_of
from fasttrack.notifications import service as notification_service
from fasttrack.notifications.models import StoredNotification
from fasttrack.projects.models import Project
from fasttrack.tasks import service as task_service
from fasttrack.tasks.exceptions import TaskNotFound
from fasttrack.tasks.models import Task, TaskView
from fasttrack.users import service as user_service
from fasttrack.users.models import Role, UserRead

_INSERT: Final = PreparedInsert(Comment, returning=columns_of(Comment, CommentRead))
_COMMENTS: Final = sa.select(*columns_of(Comment, CommentRead))
# A comment exists for whoever may see its task.
_VISIBLE: Final = PreparedQuery(
    _COMMENTS.join(Task, col(Task.id) == Comment.task_id)
    .join(Project, col(Project.id) == Task.project_id)
    .where(col(Comment.id) == sa.bindparam("comment_id"), task_service.VISIBLE_TO_VIEWER)
)
_TASK_COMMENTS: Final = KeysetList(
    _COMMENTS.where(col(Comment.task_id) == sa.bindparam("task_id")),
    key=col(Comment.id),
    descending=False,
)


async def create(
    session: AsyncSession, task: TaskView, body: CommentCreate, *, author: UserRead
) -> tuple[CommentRead, list[StoredNotification]]:
    """Add a comment; the project owner and the assignee are notified in the same commit."""
    run = await statements(session)
    try:
        row = await _INSERT.one(run, **body.model_dump(), task_id=task.id, author_id=author.id)
    except IntegrityError:
        # The task was deleted after this request loaded it; the foreign key refuses the
        # orphan.
        await session.rollback()
        raise TaskNotFound() from None
    comment = CommentRead.model_validate(row)
    notifications = await notification_service.comment_added(
        run,
        task_id=task.id,
        comment_id=comment.id,
        recipients=[task.project_owner_id, task.assignee_id],
        actor=author,
    )
    await session.commit()
    return comment, notifications


async def list_comments(reads: QueryRunner, task_id: int, params: CursorParams) -> PageResult[Row]:
    return await _TASK_COMMENTS.page(reads, params, task_id=task_id)


async def get_visible(
    reads: QueryRunner, comment_id: int, *, viewer: UserRead
) -> CommentRead | None:
    """The comment if `viewer` may see its task."""
    row = await reads.one_or_none(_VISIBLE, comment_id=comment_id, **user_service.as_viewer(viewer))
    return None if row is None else CommentRead.model_validate(row)


def can_delete(comment: CommentRead, user: UserRead) -> bool:
    return user.role is Role.admin or comment.author_id == user.id


async def delete(session: AsyncSession, comment_id: int) -> None:
    await session.exec(sa.delete(Comment).where(col(Comment.id) == comment_id))
    await session.commit()
