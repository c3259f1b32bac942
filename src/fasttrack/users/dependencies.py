"""Loaders for user routes."""

from typing import Annotated

from fastapi import Depends

from fasttrack.auth.dependencies import AdminUser
from fasttrack.core.db import IdPath, SessionDep
from fasttrack.users import service as user_service
from fasttrack.users.exceptions import UserNotFound
from fasttrack.users.models import UserRead


async def get_managed_user(user_id: IdPath, _admin: AdminUser, session: SessionDep) -> UserRead:
    user = await user_service.get(session, user_id)
    if user is None:
        raise UserNotFound()
    return user


ManagedUser = Annotated[UserRead, Depends(get_managed_user)]
