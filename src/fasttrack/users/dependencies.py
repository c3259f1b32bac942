"""Loaders for user routes."""

from typing import Annotated

from fastapi import Depends

from fasttrack.auth.dependencies import AdminUser
from fasttrack.core.db import IdPath, SessionDep
from fasttrack.users.exceptions import UserNotFound
from fasttrack.users.models import User


async def get_managed_user(user_id: IdPath, _admin: AdminUser, session: SessionDep) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    return user


ManagedUser = Annotated[User, Depends(get_managed_user)]
