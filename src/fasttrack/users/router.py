"""The caller's own account and user administration (SPEC §5 Users)."""

from typing import Annotated

from fastapi import APIRouter, Query

from fasttrack.auth.dependencies import (
    AdminUser,
    CurrentPrincipal,
    CurrentUser,
    HasherDep,
    TokensDep,
)
from fasttrack.core.db import SessionDep, UnitOfWorkRoute
from fasttrack.core.errors import problem_responses
from fasttrack.core.pagination import Page, PageParams, PageResult
from fasttrack.users import service as user_service
from fasttrack.users.dependencies import ManagedUser
from fasttrack.users.models import Role, User, UserAdminUpdate, UserRead, UserSelfUpdate

router = APIRouter(prefix="/users", tags=["users"], route_class=UnitOfWorkRoute)


@router.get("/me", response_model=UserRead, responses=problem_responses(401))
async def get_me(user: CurrentUser) -> UserRead:
    """The caller's own account."""
    return user


@router.patch("/me", response_model=UserRead, responses=problem_responses(401, 403, 422))
async def update_me(
    changes: UserSelfUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    hasher: HasherDep,
    tokens: TokensDep,
) -> User:
    """Change the caller's display name or password. A new `password` needs
    `current_password` (403 `invalid_current_password` if it is wrong) and signs out
    every other session (their WebSockets close with 4003). `role` and `is_active` cannot
    be changed here (422)."""
    return await user_service.update_self(session, principal, changes, hasher=hasher, tokens=tokens)


@router.get("", response_model=Page[UserRead], responses=problem_responses(401, 403, 422))
async def list_users(
    _admin: AdminUser,
    session: SessionDep,
    page: PageParams,
    role: Annotated[Role | None, Query()] = None,
    is_active: Annotated[bool | None, Query()] = None,
) -> PageResult[UserRead]:
    """Every account, oldest first (admins only), optionally filtered by `role` and
    `is_active`."""
    return await user_service.list_users(session, page, role=role, is_active=is_active)


@router.get("/{user_id}", response_model=UserRead, responses=problem_responses(401, 403, 404, 422))
async def get_user(user: ManagedUser) -> UserRead:
    """One account (admins only)."""
    return user


@router.patch(
    "/{user_id}", response_model=UserRead, responses=problem_responses(401, 403, 404, 409, 422)
)
async def update_user(
    user: ManagedUser,
    changes: UserAdminUpdate,
    session: SessionDep,
    tokens: TokensDep,
) -> User:
    """Change an account's display name, role or activity (admins only). Deactivation
    signs the user out everywhere at once and closes their WebSockets. The last active
    admin cannot be demoted or deactivated (409 `last_admin`)."""
    return await user_service.update_by_admin(session, user.id, changes, tokens=tokens)
