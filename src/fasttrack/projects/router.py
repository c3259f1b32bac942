"""Projects (SPEC §5 Projects)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.db import SessionDep, UnitOfWorkRoute
from fasttrack.core.errors import problem_responses
from fasttrack.core.pagination import Page, PageParams, PageResult
from fasttrack.core.routing import url_for
from fasttrack.core.versioning import IfMatchDep, etag_responses, set_etag
from fasttrack.projects import service as project_service
from fasttrack.projects.dependencies import VisibleProject, VisibleProjectSummary
from fasttrack.projects.models import (
    Project,
    ProjectCreate,
    ProjectRead,
    ProjectStatus,
    ProjectUpdate,
)

router = APIRouter(prefix="/projects", tags=["projects"], route_class=UnitOfWorkRoute)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectRead,
    responses=problem_responses(401, 422),
)
async def create_project(
    body: ProjectCreate,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    response: Response,
) -> Project:
    """Create a project owned by the caller."""
    project = await project_service.create(session, body, owner=user)
    assert project.id is not None
    response.headers["Location"] = url_for(request, "get_project", project_id=project.id)
    set_etag(response, project.version)
    return project


@router.get("", response_model=Page[ProjectRead], responses=problem_responses(401, 422))
async def list_projects(
    user: CurrentUser,
    session: SessionDep,
    page: PageParams,
    status: Annotated[ProjectStatus | None, Query()] = None,
) -> PageResult[ProjectRead]:
    """The caller's projects (an admin sees all), newest first, optionally by `status`."""
    return await project_service.list_projects(session, page, viewer=user, status=status)


@router.get(
    "/{project_id}",
    response_model=ProjectRead,
    responses={**etag_responses("project", 200), **problem_responses(401, 404, 422)},
)
async def get_project(project: VisibleProject, response: Response) -> ProjectRead:
    """One project, for its owner or an admin (404 for anyone else)."""
    set_etag(response, project.version)
    return project


@router.patch(
    "/{project_id}",
    response_model=ProjectRead,
    responses={**etag_responses("project", 200), **problem_responses(401, 404, 412, 422)},
)
async def update_project(
    project: VisibleProjectSummary,
    changes: ProjectUpdate,
    if_match: IfMatchDep,
    response: Response,
    session: SessionDep,
) -> Project:
    """Change name, description or status (owner or admin). With `If-Match`, applies only
    if the project still has that ETag (412 `precondition_failed` otherwise)."""
    updated = await project_service.update(session, project.id, changes, if_match=if_match)
    set_etag(response, updated.version)
    return updated


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 422),
)
async def delete_project(project: VisibleProjectSummary, session: SessionDep) -> None:
    """Delete a project with its tasks and their comments (owner or admin)."""
    await project_service.delete(session, project.id)
