"""Projects (SPEC §5 Projects)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.db import IdPath, SessionDep, UnitOfWorkRoute
from fasttrack.core.errors import problem_responses
from fasttrack.core.pagination import Page, PageParams, PageResult
from fasttrack.core.routing import url_for
from fasttrack.core.versioning import IfMatchDep, etag_responses, set_etag
from fasttrack.projects import members as member_service
from fasttrack.projects import service as project_service
from fasttrack.projects.access import Action
from fasttrack.projects.dependencies import ManagedProject, ProjectAccessDep, VisibleProject
from fasttrack.projects.exceptions import MemberNotFound
from fasttrack.projects.models import (
    MemberAdd,
    MemberRead,
    MemberRole,
    MemberUpdate,
    Project,
    ProjectCreate,
    ProjectRead,
    ProjectStatus,
    ProjectUpdate,
    Transfer,
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
    role: Annotated[MemberRole | None, Query()] = None,
) -> PageResult[ProjectRead]:
    """The projects the caller is a member of (an admin: every project), newest first,
    optionally by `status` and by the caller's `role` in them."""
    return await project_service.list_projects(session, page, viewer=user, status=status, role=role)


@router.get(
    "/{project_id}",
    response_model=ProjectRead,
    responses={**etag_responses("project", 200), **problem_responses(401, 404, 422)},
)
async def get_project(project: VisibleProject, response: Response) -> ProjectRead:
    """One project, for its members and admins (404 for anyone else)."""
    set_etag(response, project.version)
    return project


@router.patch(
    "/{project_id}",
    response_model=ProjectRead,
    responses={**etag_responses("project", 200), **problem_responses(401, 403, 404, 412, 422)},
)
async def update_project(
    access: ManagedProject,
    changes: ProjectUpdate,
    if_match: IfMatchDep,
    user: CurrentUser,
    response: Response,
    session: SessionDep,
) -> Project:
    """Change name, description or status (the owner or an admin; other members 403).
    With `If-Match`, applies only if the project still has that ETag (412
    `precondition_failed` otherwise)."""
    updated = await project_service.update(
        session, access.project.id, changes, actor=user, if_match=if_match
    )
    set_etag(response, updated.version)
    return updated


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_project(access: ManagedProject, user: CurrentUser, session: SessionDep) -> None:
    """Delete a project with its members, tasks and their comments (the owner or an
    admin; other members 403)."""
    await project_service.delete(session, access.project.id, actor=user)


# --- Members (SPEC §11) ----------------------------------------------------------------


@router.get(
    "/{project_id}/members",
    response_model=Page[MemberRead],
    responses=problem_responses(401, 404, 422),
)
async def list_members(
    access: ProjectAccessDep,
    session: SessionDep,
    page: PageParams,
    role: Annotated[MemberRole | None, Query()] = None,
) -> PageResult[MemberRead]:
    """A project's members in ascending `user_id`, optionally by `role` (any member, or
    an admin)."""
    return await member_service.list_members(session, access.project.id, page, role=role)


@router.post(
    "/{project_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def add_member(
    access: ManagedProject,
    body: MemberAdd,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    response: Response,
) -> MemberRead:
    """Add an active user, by `user_id` or by `email` in any letter case, as an `editor`
    (the default) or a `viewer` (the owner or an admin). No such active user: 422
    `unknown_user`; already a member: 409. The user is told (`member_added`)."""
    member = await member_service.add(session, access.project.id, body, actor=user)
    response.headers["Location"] = url_for(
        request, "get_member", project_id=member.project_id, user_id=member.user_id
    )
    return member


@router.get(
    "/{project_id}/members/{user_id}",
    response_model=MemberRead,
    responses=problem_responses(401, 404, 422),
)
async def get_member(access: ProjectAccessDep, user_id: IdPath, session: SessionDep) -> MemberRead:
    """One member of the project (404 if the user is not one)."""
    member = await member_service.get_member(session, access.project.id, user_id)
    if member is None:
        raise MemberNotFound()
    return member


@router.patch(
    "/{project_id}/members/{user_id}",
    response_model=MemberRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_member(
    access: ManagedProject,
    user_id: IdPath,
    body: MemberUpdate,
    user: CurrentUser,
    session: SessionDep,
) -> MemberRead:
    """Change a member's role to `editor` or `viewer` (the owner or an admin); the owner's
    own row answers 409 (transfer the project instead)."""
    return await member_service.change_role(session, access.project.id, user_id, body, actor=user)


@router.delete(
    "/{project_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def remove_member(
    access: ProjectAccessDep, user_id: IdPath, user: CurrentUser, session: SessionDep
) -> None:
    """Remove a member (the owner or an admin), or leave the project (any member, with
    their own `user_id`). Their tasks in the project are unassigned in the same
    transaction, and from their next request on the project answers 404 to them. The
    owner cannot be removed (409). A member removed by someone else is told
    (`member_removed`)."""
    if user_id != user.id:
        access.require(Action.manage)
    await member_service.remove(session, access.project.id, user_id, actor=user)


@router.post(
    "/{project_id}/transfer",
    response_model=ProjectRead,
    responses={**etag_responses("project", 200), **problem_responses(401, 403, 404, 409, 422)},
)
async def transfer_project(
    access: ManagedProject,
    body: Transfer,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
) -> ProjectRead:
    """Make a current, active member the owner (the owner or an admin); the previous
    owner stays as an `editor`. Not a member: 422 `not_a_member`; a deactivated member:
    422 `unknown_user`; the owner themselves: 409."""
    project = await member_service.transfer(session, access.project.id, body, actor=user)
    set_etag(response, project.version)
    return project
