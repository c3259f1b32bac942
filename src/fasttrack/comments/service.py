"""Comments on tasks (SPEC §5 Comments)."""

from typing import Final

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.exceptions import CommentNotFound
from fasttrack.comments.models import Comment, CommentCreate, CommentRead
from fasttrack.core.db import InsertReturning, columns_of, commit, execute, table_of
from fasttrack.core.errors import Forbidden
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.notifications import service as notification_service
from fasttrack.projects import access as project_access
from fasttrack.projects.access import Action
from fasttrack.tasks import service as task_service
from fasttrack.tasks.exceptions import TaskNotFound
from fasttrack.tasks.models import TaskView
from fasttrack.users import service as user_service
from fasttrack.users.models import Role, UserRead

COMMENT: Final = table_of(Comment)
_COLUMNS: Final = columns_of(Comment, CommentRead)
_COMMENTS: Final = sa.select(*_COLUMNS)
_INSERT: Final = InsertReturning(Comment, returning=_COLUMNS)
# A comment exists for whoever may see its task.
_VISIBLE: Final = _COMMENTS.join(
    task_service.TASK, task_service.TASK.c.id == COMMENT.c.task_id
).where(COMMENT.c.id == sa.bindparam("comment_id"), task_service.VISIBLE_TO_VIEWER)
# The task a comment goes on, locked until the comment commits (PostgreSQL; on SQLite
# the writer holds the database from the first statement on).
_LOCKED_TASK: Final = (
    sa.select(task_service.TASK.c.assignee_id)
    .where(task_service.TASK.c.id == sa.bindparam("task_id"))
    .with_for_update()
)
_PROJECT_OF_TASK: Final = sa.select(task_service.TASK.c.project_id).where(
    task_service.TASK.c.id == sa.bindparam("task_id")
)
_TASK_COMMENTS: Final = KeysetList(
    _COMMENTS.where(COMMENT.c.task_id == sa.bindparam("task_id")),
    CommentRead,
    key=COMMENT.c.id,
    descending=False,
)


async def create(
    session: AsyncSession, task: TaskView, body: CommentCreate, *, author: UserRead
) -> CommentRead:
    """Add a comment (any member, or an admin); the project owner and the assignee are
    notified in the same commit.

    Who may comment is decided under the lock of the project's row (a member removed
    since the request loaded the task gets 404), on the task as it stands then.
    """
    access = await project_access.lock_access(session, task.project_id, author)
    access.require(Action.comment)
    locked = (await execute(session, _LOCKED_TASK, {"task_id": task.id})).first()
    if locked is None:
        raise TaskNotFound()
    recipients = [access.project.owner_id, locked.assignee_id]
    row = await _INSERT(session, **body.model_dump(), task_id=task.id, author_id=author.id)
    comment = CommentRead.model_validate(row)
    await notification_service.comment_added(
        session,
        task_id=task.id,
        comment_id=comment.id,
        recipients=recipients,
        actor=author,
    )
    await commit(session)
    return comment


async def list_comments(
    session: AsyncSession, task_id: int, params: CursorParams
) -> PageResult[CommentRead]:
    return await _TASK_COMMENTS.page(session, params, task_id=task_id)


async def get_visible(
    session: AsyncSession, comment_id: int, *, viewer: UserRead
) -> CommentRead | None:
    """The comment if `viewer` may see its task."""
    parameters = {"comment_id": comment_id, **user_service.as_viewer(viewer)}
    row = (await execute(session, _VISIBLE, parameters)).mappings().first()
    return None if row is None else CommentRead.model_validate(row)


def can_delete(comment: CommentRead, user: UserRead) -> bool:
    return user.role is Role.admin or comment.author_id == user.id


async def delete(session: AsyncSession, comment: CommentRead, *, actor: UserRead) -> None:
    """Delete a comment (its author or an admin), decided under the lock of its project's
    row: a member removed since the request loaded the comment gets 404."""
    project_id = (await execute(session, _PROJECT_OF_TASK, {"task_id": comment.task_id})).scalar()
    if project_id is None:
        raise CommentNotFound()
    (await project_access.lock_access(session, project_id, actor)).require(Action.comment)
    if not can_delete(comment, actor):
        raise Forbidden("Only the author or an admin may delete a comment")
    await execute(session, sa.delete(COMMENT).where(COMMENT.c.id == comment.id))
    await commit(session)
