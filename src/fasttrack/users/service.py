"""Accounts: creation, self-service changes, administration (SPEC §5 Users)."""

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth import service as auth_service
from fasttrack.auth.service import Principal
from fasttrack.auth.tokens import TokenService
from fasttrack.core.cache import user_scope
from fasttrack.core.db import columns_of, commit, effects_of, execute, idle, table_of, utcnow
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.core.security import PasswordHasher
from fasttrack.users.exceptions import EmailTaken, LastAdmin, UserNotFound, WrongCurrentPassword
from fasttrack.users.models import (
    Role,
    User,
    UserAdminUpdate,
    UserCreate,
    UserPromotion,
    UserRead,
    UserSelfUpdate,
)

# Visibility conditions in prepared queries name the caller with these two parameters.
VIEWER_ID: Final = sa.bindparam("viewer_id", type_=sa.Integer)
VIEWER_IS_ADMIN: Final = sa.bindparam("viewer_is_admin", type_=sa.Boolean)

USER: Final = table_of(User)
_USERS: Final = sa.select(*columns_of(User, UserRead))
_USER: Final = _USERS.where(USER.c.id == sa.bindparam("user_id"))
_USER_LIST: Final = KeysetList(
    _USERS,
    UserRead,
    key=USER.c.id,
    descending=False,
    filters={"role": USER.c.role, "is_active": USER.c.is_active},
)


async def create(
    session: AsyncSession, body: UserCreate, *, hasher: PasswordHasher, role: Role = Role.user
) -> User:
    """Register an account; 409 if the e-mail is taken in any letter case."""
    async with idle(session):
        hashed_password = await hasher.hash(body.password)
    user = User(
        email=body.email,
        hashed_password=hashed_password,
        display_name=body.display_name or body.email.split("@", 1)[0][:100],
        role=role,
    )
    session.add(user)
    try:
        await commit(session)
    except IntegrityError as exc:
        await session.rollback()
        raise EmailTaken() from exc
    return user


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.exec(select(User).where(User.email == email.lower()))).first()


def as_viewer(user: UserRead) -> dict[str, Any]:
    """The values of VIEWER_ID and VIEWER_IS_ADMIN for `user`."""
    return {"viewer_id": user.id, "viewer_is_admin": user.role is Role.admin}


async def get(session: AsyncSession, user_id: int) -> UserRead | None:
    row = (await execute(session, _USER, {"user_id": user_id})).mappings().one_or_none()
    return None if row is None else UserRead.model_validate(row)


async def list_users(
    session: AsyncSession,
    params: CursorParams,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
) -> PageResult[UserRead]:
    return await _USER_LIST.page(session, params, role=role, is_active=is_active)


async def _load(session: AsyncSession, user_id: int) -> User:
    # Not locked: demotions lock the admin rows in id order (see below), and locking this
    # row first could deadlock two admins demoting each other.
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def update_self(
    session: AsyncSession,
    principal: Principal,
    changes: UserSelfUpdate,
    *,
    hasher: PasswordHasher,
    tokens: TokenService,
) -> User:
    """Apply the caller's own changes.

    A new password needs the current one and ends every other session of the user: a
    thief holding an old refresh token loses it, the caller keeps working.
    """
    user = await _load(session, principal.user.id)
    data = changes.model_dump(exclude_unset=True)
    if "password" in data:
        async with idle(session):
            matches = await hasher.verify(data.pop("current_password"), user.hashed_password)
            new_hash = await hasher.hash(data.pop("password")) if matches else None
        if new_hash is None:
            raise WrongCurrentPassword()
        user.hashed_password = new_hash
        session.add(user)
        await auth_service.revoke_user_sessions(
            session, principal.user.id, tokens=tokens, keep_sid=principal.claims.sid
        )
    data.pop("current_password", None)
    effects_of(session).invalidate(user_scope(principal.user.id))
    user.sqlmodel_update(data)
    user.updated_at = utcnow()
    session.add(user)
    await commit(session)
    return user


async def update_by_admin(
    session: AsyncSession, user_id: int, changes: UserAdminUpdate, *, tokens: TokenService
) -> User:
    """Apply an admin's changes to a user.

    Deactivation ends every session, so reactivating an account never revives tokens
    issued before it was locked.
    """
    user = await _load(session, user_id)
    data = changes.model_dump(exclude_unset=True)
    loses_admin = (
        user.role is Role.admin
        and user.is_active
        and (data.get("role", Role.admin) is not Role.admin or data.get("is_active", True) is False)
    )
    if loses_admin and not await _another_active_admin_exists(session, user):
        raise LastAdmin()
    if data.get("is_active") is False and user.is_active:
        await auth_service.revoke_user_sessions(session, user_id, tokens=tokens)
    effects_of(session).invalidate(user_scope(user_id))
    user.sqlmodel_update(data)
    user.updated_at = utcnow()
    session.add(user)
    await commit(session)
    return user


async def _another_active_admin_exists(session: AsyncSession, user: User) -> bool:
    # Locking every active admin row, in id order, serialises concurrent demotions on
    # PostgreSQL: two admins demoting each other cannot both still see the other one.
    # SQLite writers are already serialised by BEGIN IMMEDIATE and ignore the clause.
    statement = (
        select(User.id)
        .where(User.role == Role.admin, col(User.is_active).is_(True))
        .order_by(col(User.id))
        .with_for_update()
    )
    return any(admin_id != user.id for admin_id in (await session.exec(statement)).all())


async def ensure_admin(
    session: AsyncSession,
    email: str,
    *,
    password: str | None,
    display_name: str | None,
    hasher: PasswordHasher,
    tokens: TokenService,
) -> tuple[User, bool]:
    """Promote the account with this e-mail to admin, creating it if needed.

    Returns the user and whether it was created. The password and display name follow
    the rules of registration either way (pydantic.ValidationError otherwise). A new
    password for an existing account ends all of its sessions, as any password change.
    """
    existing = await get_by_email(session, email)
    if existing is None:
        if password is None:
            raise ValueError("a password is needed to create a new account")
        body = UserCreate(email=email, password=password, display_name=display_name)
        return await create(session, body, hasher=hasher, role=Role.admin), True
    changes = UserPromotion(password=password, display_name=display_name)
    if changes.password is not None:
        # Before any change: hashing hands the connection back, which commits.
        async with idle(session):
            existing.hashed_password = await hasher.hash(changes.password)
        assert existing.id is not None
        await auth_service.revoke_user_sessions(session, existing.id, tokens=tokens)
    assert existing.id is not None
    effects_of(session).invalidate(user_scope(existing.id))
    existing.role = Role.admin
    existing.is_active = True
    if changes.display_name:
        existing.display_name = changes.display_name
    existing.updated_at = utcnow()
    session.add(existing)
    await commit(session)
    return existing, False
