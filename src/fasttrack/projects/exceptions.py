"""Errors of the projects domain."""

from fasttrack.core.errors import NotFound


class ProjectNotFound(NotFound):
    default_detail = "Project not found"
