"""Sessions, token rotation and revocation: the rules of SPEC §5 Auth."""

import logging
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy import bindparam, delete, exists, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth.exceptions import (
    AccountDisabled,
    InvalidCredentials,
    InvalidToken,
    TokenRevoked,
)
from fasttrack.auth.models import AuthSession, RevokedToken, TokenPair
from fasttrack.auth.tokens import Claims, TokenService, TokenType, new_token_id
from fasttrack.core.cache import ValidatedCache, user_scope
from fasttrack.core.db import (
    Database,
    InsertReturning,
    UnitOfWork,
    columns_of,
    commit,
    effects_of,
    execute,
    insert_ignoring_duplicates,
    table_of,
    utcnow,
)
from fasttrack.core.security import PasswordHasher
from fasttrack.users.models import User, UserRead

logger = logging.getLogger("fasttrack.auth")


# Run for every token not in the cache, with the token's values as parameters.
_PRINCIPAL: Final = sa.select(
    *columns_of(User, UserRead),
    exists()
    .where(table_of(RevokedToken).c.id.in_([bindparam("jti"), bindparam("sid")]))
    .label("revoked"),
).where(table_of(User).c.id == bindparam("user_id"))


_INSERT_SESSION: Final = InsertReturning(AuthSession, returning=[table_of(AuthSession).c.id])


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the current user row and the claims of the token they sent."""

    user: UserRead
    claims: Claims


# Access tokens already checked, by their id (see principal_for).
PrincipalCache = ValidatedCache[str, Principal]


class SessionReused(TokenRevoked):
    """A rotated refresh token came back: its session is revoked (RFC 9700 §4.14.2)."""

    def __init__(self, *, user_id: int, sid: str) -> None:
        super().__init__("This refresh token was already used or revoked; its session is revoked")
        self.user_id = user_id
        self.sid = sid


async def load_principal(session: AsyncSession, claims: Claims) -> Principal:
    """Check the token against the database in one query: user, activity and blocklist.

    Role and activity always come from the row, never from the token, so a demotion or
    deactivation applies to tokens already issued.
    """
    parameters = {"user_id": claims.user_id, "jti": claims.jti, "sid": claims.sid}
    row = (await execute(session, _PRINCIPAL, parameters)).mappings().one_or_none()
    if row is None or not row["is_active"]:
        raise InvalidToken()
    if row["revoked"]:
        raise TokenRevoked()
    return Principal(user=UserRead.model_validate(row), claims=claims)


async def principal_for(
    token: str, *, tokens: TokenService, work: UnitOfWork, cache: PrincipalCache
) -> Principal:
    """Who sends this access token: verified (signature, type, issuer, audience, expiry),
    then checked against the database, or found in the cache of tokens so checked.

    The cache is validated: every change to a user or a session (logout, deactivation,
    role or password change) moves the user's scope in every process before its request
    answers (see core.cache), so role and activity are still the row's.
    """
    claims = tokens.decode(token, TokenType.access)

    async def read() -> Principal:
        return await load_principal(await work.session(), claims)

    principal = await cache.get_or_read(
        claims.jti, read, scopes=[user_scope(claims.user_id)], may_wait=work.may_wait
    )
    assert principal is not None  # load_principal raises rather than finding nothing
    return principal


async def authenticate(
    work: UnitOfWork, email: str, password: str, *, hasher: PasswordHasher
) -> User:
    """The user with these credentials; unknown e-mail and wrong password look alike.

    `work` (a reader) ends after the lookup: its turn is not held while the password is
    checked, nor while start_session waits for the writer's.
    """
    session = await work.session()
    user = (await session.exec(select(User).where(User.email == email))).first()
    await work.close()
    if user is None:
        await hasher.verify_against_dummy(password)
        matches = False
    else:
        matches = await hasher.verify(password, user.hashed_password)
    if user is None or not matches:
        raise InvalidCredentials()
    # Only after the password proved who is asking may we say the account is disabled.
    if not user.is_active:
        raise AccountDisabled()
    return user


async def start_session(database: Database, user: User, *, tokens: TokenService) -> TokenPair:
    """Open a new session (`sid`) for a user who just proved their credentials.

    Its row is one INSERT, in a unit of work of its own on the writer: the lookup before
    it needed no writer (on SQLite the single one), and holds none.
    """
    assert user.id is not None
    sid = new_token_id()
    pair, refresh = tokens.issue_pair(user.id, sid=sid)
    async with database.unit_of_work(write=True) as work:
        session = await work.session(single_statement=True)
        await _INSERT_SESSION(session, id=sid, user_id=user.id, expires_at=refresh.expires_at)
        await work.commit()
    return pair


async def log_in(
    work: UnitOfWork,
    email: str,
    password: str,
    *,
    database: Database,
    hasher: PasswordHasher,
    tokens: TokenService,
) -> TokenPair:
    """Check the credentials, then open a new session for their user (`/auth/login` and
    the OAuth2 form of `/auth/token`)."""
    user = await authenticate(work, email, password, hasher=hasher)
    return await start_session(database, user, tokens=tokens)


async def rotate(session: AsyncSession, refresh_token: str, *, tokens: TokenService) -> TokenPair:
    """Exchange a refresh token for a new pair and revoke the one presented.

    A refresh token is usable once. Presenting it again means it leaked (RFC 9700
    §4.14.2): the whole session is revoked, including the pair that replaced it. When
    several requests race with one token, the primary key of the blocklist lets exactly
    one of them record the rotation; the others are treated as reuse.
    """
    claims = tokens.decode(refresh_token, TokenType.refresh)
    try:
        await load_principal(session, claims)
        session.add(RevokedToken(id=claims.jti, expires_at=claims.expires_at))
        await session.flush()
    except (TokenRevoked, IntegrityError):
        await session.rollback()
        await revoke_session(session, claims.sid, user_id=claims.user_id, tokens=tokens)
        await commit(session)
        logger.warning("revoked refresh token presented: session %s revoked", claims.sid)
        raise SessionReused(user_id=claims.user_id, sid=claims.sid) from None
    pair, refresh = tokens.issue_pair(claims.user_id, sid=claims.sid)
    await session.exec(
        update(AuthSession)
        .where(col(AuthSession.id) == claims.sid)
        .values(expires_at=refresh.expires_at)
    )
    await commit(session)
    return pair


async def revoke_session(
    session: AsyncSession, sid: str, *, user_id: int, tokens: TokenService
) -> None:
    """Put a session of `user_id` on the blocklist; every token it issued stops working
    once this commits, and its sockets close. Flushes only."""
    effects_of(session).revoke(user_id, [sid])
    # Any token of the session was issued by now, so none outlives this moment plus the
    # refresh lifetime: the blocklist entry may be purged after that.
    expires_at = utcnow() + tokens.refresh_lifetime
    await insert_ignoring_duplicates(session, RevokedToken, [{"id": sid, "expires_at": expires_at}])
    await session.exec(delete(AuthSession).where(col(AuthSession.id) == sid))


async def revoke_user_sessions(
    session: AsyncSession, user_id: int, *, tokens: TokenService, keep_sid: str | None = None
) -> list[str]:
    """Revoke every live session of a user except `keep_sid`. Flushes only."""
    effects = effects_of(session)
    statement = select(AuthSession.id).where(AuthSession.user_id == user_id)
    if keep_sid is not None:
        statement = statement.where(AuthSession.id != keep_sid)
    sids = list((await session.exec(statement)).all())
    expires_at = utcnow() + tokens.refresh_lifetime
    await insert_ignoring_duplicates(
        session, RevokedToken, [{"id": sid, "expires_at": expires_at} for sid in sids]
    )
    await session.exec(delete(AuthSession).where(col(AuthSession.id).in_(sids)))
    effects.revoke(user_id, sids)
    return sids


async def logout(
    session: AsyncSession,
    principal: Principal,
    *,
    refresh_token: str | None,
    tokens: TokenService,
) -> list[str]:
    """Revoke the caller's session, and the session of `refresh_token` if it is theirs."""
    sids = [principal.claims.sid]
    if refresh_token is not None:
        # An expired refresh token is already useless, but still names a session to end.
        claims = tokens.decode(refresh_token, TokenType.refresh, verify_exp=False)
        if claims.user_id != principal.user.id:
            raise InvalidToken("The refresh token belongs to another user")
        if claims.sid not in sids:
            sids.append(claims.sid)
    for sid in sids:
        await revoke_session(session, sid, user_id=principal.user.id, tokens=tokens)
    await commit(session)
    return sids


async def logout_everywhere(
    session: AsyncSession, principal: Principal, *, tokens: TokenService
) -> list[str]:
    """Revoke every session of the caller, the current one included."""
    sids = await revoke_user_sessions(session, principal.user.id, tokens=tokens)
    if principal.claims.sid not in sids:
        await revoke_session(
            session, principal.claims.sid, user_id=principal.user.id, tokens=tokens
        )
        sids.append(principal.claims.sid)
    await commit(session)
    return sids


async def purge_expired(session: AsyncSession) -> int:
    """Forget blocklist entries and sessions past their natural expiry."""
    now = utcnow()
    revoked = await session.exec(delete(RevokedToken).where(col(RevokedToken.expires_at) < now))
    sessions = await session.exec(delete(AuthSession).where(col(AuthSession.expires_at) < now))
    await commit(session)
    return int(revoked.rowcount or 0) + int(sessions.rowcount or 0)
