"""Loaders for project routes."""

from typing import Annotated

from fastapi import Depends

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.db import IdPath, ReadsDep
from fasttrack.projects import service as project_service
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import ProjectRead


async def get_visible_project(
    project_id: IdPath, user: CurrentUser, reads: ReadsDep
) -> ProjectRead:
    # Only the owner and admins see a project; for anyone else it does not exist (404),
    # assignees of its tasks included.
    project = await project_service.get_visible(reads, project_id, viewer=user)
    if project is None:
        raise ProjectNotFound()
    return project


VisibleProject = Annotated[ProjectRead, Depends(get_visible_project)]
