"""Errors of the comments domain."""

from fasttrack.core.errors import NotFound


class CommentNotFound(NotFound):
    default_detail = "Comment not found"
