"""Registration, login, token rotation and logout (SPEC §5 Auth)."""

from typing import Annotated

from fastapi import APIRouter, Body, Form, Request, Response, status

from fasttrack.auth import service as auth_service
from fasttrack.auth.dependencies import CurrentPrincipal, HasherDep, TokensDep
from fasttrack.auth.models import (
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    TokenForm,
    TokenPair,
)
from fasttrack.core.db import DatabaseDep, ReadWork, SessionDep, UnitOfWorkRoute
from fasttrack.core.errors import problem_responses
from fasttrack.core.routing import url_for
from fasttrack.users import service as user_service
from fasttrack.users.models import User, UserCreate, UserRead

router = APIRouter(prefix="/auth", tags=["auth"], route_class=UnitOfWorkRoute)

# Token responses must never be cached (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(409, 422),
)
async def register(
    body: UserCreate, session: SessionDep, hasher: HasherDep, request: Request, response: Response
) -> User:
    """Create an account. The e-mail is stored lower-cased and must be unique in any
    letter case (409 `conflict` otherwise)."""
    user = await user_service.create(session, body, hasher=hasher)
    assert user.id is not None
    response.headers["Location"] = url_for(request, "get_user", user_id=user.id)
    return user


@router.post(
    "/login",
    response_model=TokenPair,
    responses=problem_responses(401, 403, 422),
)
async def login(
    body: LoginRequest,
    work: ReadWork,
    database: DatabaseDep,
    hasher: HasherDep,
    tokens: TokensDep,
    response: Response,
) -> TokenPair:
    """Exchange e-mail and password for an access token (15 min) and a refresh token
    (7 days) that start a new session. Wrong password and unknown e-mail are the same
    401; a deactivated account gets 403."""
    response.headers.update(NO_STORE)
    return await auth_service.log_in(
        work, body.email, body.password, database=database, hasher=hasher, tokens=tokens
    )


@router.post(
    "/token",
    response_model=TokenPair,
    responses=problem_responses(401, 403, 422),
)
async def issue_token(
    form: Annotated[TokenForm, Form()],
    work: ReadWork,
    database: DatabaseDep,
    hasher: HasherDep,
    tokens: TokensDep,
    response: Response,
) -> TokenPair:
    """The login of `/auth/login` as an OAuth2 password form (`username` is the
    e-mail), as used by the "Authorize" button of the interactive docs."""
    response.headers.update(NO_STORE)
    return await auth_service.log_in(
        work, form.username, form.password, database=database, hasher=hasher, tokens=tokens
    )


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=problem_responses(401, 422),
)
async def refresh_tokens(
    body: RefreshRequest,
    session: SessionDep,
    tokens: TokensDep,
    response: Response,
) -> TokenPair:
    """Rotate a refresh token: answers a new pair and revokes the token presented.
    Presenting an already-rotated refresh token revokes its whole session (401
    `token_revoked`). Clients must not refresh concurrently with one token: exactly one
    such request succeeds and the others count as reuse."""
    pair = await auth_service.rotate(session, body.refresh_token, tokens=tokens)
    response.headers.update(NO_STORE)
    return pair


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 422),
)
async def logout(
    principal: CurrentPrincipal,
    session: SessionDep,
    tokens: TokensDep,
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> None:
    """End the current session: the access token and every refresh token of its
    session stop working, and its WebSockets close (4003). A `refresh_token` in the body
    ends its session too."""
    await auth_service.logout(
        session,
        principal,
        refresh_token=body.refresh_token if body else None,
        tokens=tokens,
    )


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401),
)
async def logout_all(principal: CurrentPrincipal, session: SessionDep, tokens: TokensDep) -> None:
    """End every session of the caller, on every device; their WebSockets close (4003)."""
    await auth_service.logout_everywhere(session, principal, tokens=tokens)
