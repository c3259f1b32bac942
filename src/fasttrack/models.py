"""Every table, imported once, so metadata and mappers are complete wherever it is used."""

from fasttrack.auth.models import AuthSession, RevokedToken
from fasttrack.comments.models import Comment
from fasttrack.notifications.models import Notification
from fasttrack.projects.models import Project, ProjectMember
from fasttrack.tasks.models import Task
from fasttrack.users.models import User

__all__ = [
    "AuthSession",
    "Comment",
    "Notification",
    "Project",
    "ProjectMember",
    "RevokedToken",
    "Task",
    "User",
]
