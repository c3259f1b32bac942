"""Who is calling and what they may do, as composable FastAPI dependencies."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from fasttrack.auth import service as auth_service
from fasttrack.auth.exceptions import NotAuthenticated
from fasttrack.auth.service import Principal
from fasttrack.auth.tokens import TokenService
from fasttrack.core.db import UnitOfWorkDep
from fasttrack.core.errors import Forbidden
from fasttrack.core.security import PasswordHasher
from fasttrack.users.models import Role, UserRead

# auto_error=False: a missing token is answered by our own problem-details 401.
bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_token_service(connection: HTTPConnection) -> TokenService:
    tokens: TokenService = connection.app.state.tokens
    return tokens


async def get_password_hasher(connection: HTTPConnection) -> PasswordHasher:
    hasher: PasswordHasher = connection.app.state.hasher
    return hasher


TokensDep = Annotated[TokenService, Depends(get_token_service)]
HasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]


async def get_principal(
    connection: HTTPConnection,
    token: Annotated[str | None, Depends(bearer)],
    work: UnitOfWorkDep,
) -> Principal:
    """Verify the bearer token, then check the blocklist and the user's current state
    (in the database, or in the exact cache of tokens checked before)."""
    if not token:
        raise NotAuthenticated()
    state = connection.app.state
    return await auth_service.principal_for(
        token, tokens=state.tokens, work=work, cache=state.principals
    )


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: CurrentPrincipal) -> UserRead:
    return principal.user


CurrentUser = Annotated[UserRead, Depends(get_current_user)]


def require_role(*roles: Role) -> Callable[[UserRead], Awaitable[UserRead]]:
    async def check_role(user: CurrentUser) -> UserRead:
        if user.role not in roles:
            raise Forbidden("Your role does not allow this")
        return user

    return check_role


AdminUser = Annotated[UserRead, Depends(require_role(Role.admin))]
