"""Errors of the notifications domain."""

from fasttrack.core.errors import NotFound


class NotificationNotFound(NotFound):
    default_detail = "Notification not found"
