"""Loaders for comment routes."""

from typing import Annotated

from fastapi import Depends

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.comments import service as comment_service
from fasttrack.comments.exceptions import CommentNotFound
from fasttrack.comments.models import CommentRead
from fasttrack.core.db import IdPath, SessionDep
from fasttrack.core.errors import Forbidden


async def get_visible_comment(
    comment_id: IdPath, user: CurrentUser, session: SessionDep
) -> CommentRead:
    # A comment on a task the caller cannot see does not exist for them (404).
    comment = await comment_service.get_visible(session, comment_id, viewer=user)
    if comment is None:
        raise CommentNotFound()
    return comment


VisibleComment = Annotated[CommentRead, Depends(get_visible_comment)]


async def get_deletable_comment(comment: VisibleComment, user: CurrentUser) -> CommentRead:
    if not comment_service.can_delete(comment, user):
        raise Forbidden("Only the author or an admin may delete a comment")
    return comment


DeletableComment = Annotated[CommentRead, Depends(get_deletable_comment)]
