"""Loaders for project routes: the project as the caller may use it (404 if they may
not see it at all, 403 if their role does not allow what the route does)."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.db import IdPath, SessionDep, UnitOfWorkDep
from fasttrack.projects import access as project_access
from fasttrack.projects import service as project_service
from fasttrack.projects.access import Action, ProjectAccess
from fasttrack.projects.exceptions import ProjectNotFound
from fasttrack.projects.models import ProjectRead


async def get_visible_project(
    project_id: IdPath, user: CurrentUser, session: SessionDep
) -> ProjectRead:
    # Members and admins see a project; for anyone else it does not exist (404).
    project = await project_service.get_visible(session, project_id, viewer=user)
    if project is None:
        raise ProjectNotFound()
    return project


VisibleProject = Annotated[ProjectRead, Depends(get_visible_project)]


async def get_access(
    project_id: IdPath, user: CurrentUser, work: UnitOfWorkDep, connection: HTTPConnection
) -> ProjectAccess:
    access = await project_access.get_access(
        work, project_id, user, cache=connection.app.state.project_access
    )
    if access is None:
        raise ProjectNotFound()
    return access


ProjectAccessDep = Annotated[ProjectAccess, Depends(get_access)]


def allowing(action: Action) -> Callable[[ProjectAccess], Awaitable[ProjectAccess]]:
    """The caller's access, if their role allows `action` (403 otherwise)."""

    async def require(access: ProjectAccessDep) -> ProjectAccess:
        access.require(action)
        return access

    return require


EditableProject = Annotated[ProjectAccess, Depends(allowing(Action.edit))]
ManagedProject = Annotated[ProjectAccess, Depends(allowing(Action.manage))]
