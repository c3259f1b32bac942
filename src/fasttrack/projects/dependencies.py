"""Loaders for project routes."""

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.db import IdPath, SessionDep, UnitOfWorkDep
from fasttrack.projects import service as project_service
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import ProjectRead, ProjectSummary


async def get_visible_project(
    project_id: IdPath, user: CurrentUser, session: SessionDep
) -> ProjectRead:
    # Only the owner and admins see a project; for anyone else it does not exist (404),
    # assignees of its tasks included.
    project = await project_service.get_visible(session, project_id, viewer=user)
    if project is None:
        raise ProjectNotFound()
    return project


VisibleProject = Annotated[ProjectRead, Depends(get_visible_project)]


async def get_visible_project_summary(
    project_id: IdPath, user: CurrentUser, work: UnitOfWorkDep, connection: HTTPConnection
) -> ProjectSummary:
    # The same rule as VisibleProject, for the routes of a project's tasks.
    summary = await project_service.get_visible_summary(
        work, project_id, viewer=user, cache=connection.app.state.project_summaries
    )
    if summary is None:
        raise ProjectNotFound()
    return summary


VisibleProjectSummary = Annotated[ProjectSummary, Depends(get_visible_project_summary)]
