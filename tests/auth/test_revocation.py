"""The revocation blocklist: what it refuses, that it survives a restart, and its purge."""

import asyncio
from datetime import timedelta

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack import main
from fasttrack.auth import service as auth_service
from fasttrack.auth.models import AuthSession, RevokedToken
from fasttrack.core.db import utcnow
from tests.conftest import AppFactory
from tests.factories import assert_problem, bearer, claims_of, make_user, token_pair

HOUR = timedelta(hours=1)


async def test_a_revoked_jti_is_refused_while_its_session_lives_on(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    claims = claims_of(pair["access_token"])
    session.add(RevokedToken(id=claims["jti"], expires_at=utcnow() + HOUR))
    await session.commit()

    response = await client.get("/users/me", headers=bearer(pair["access_token"]))

    assert_problem(response, 401, "token_revoked")
    rotated = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200


async def test_a_deactivated_users_tokens_stop_working_at_once(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    user.is_active = False
    session.add(user)
    await session.commit()

    access = await client.get("/users/me", headers=bearer(pair["access_token"]))
    refresh = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})

    assert_problem(access, 401, "invalid_token")
    assert_problem(refresh, 401, "invalid_token")


async def test_revocations_survive_a_restart(
    client: AsyncClient, session: AsyncSession, app_factory: AppFactory
) -> None:
    user = await make_user(session)
    logged_out, reused = await token_pair(client, user), await token_pair(client, user)
    live = await token_pair(client, user)
    await client.post("/auth/logout", headers=bearer(logged_out["access_token"]))
    await client.post("/auth/refresh", json={"refresh_token": reused["refresh_token"]})

    # A second application on the same database: a restart, or another worker.
    async with app_factory() as restarted, _client(restarted) as other:
        gone = await other.get("/users/me", headers=bearer(logged_out["access_token"]))
        assert_problem(gone, 401, "token_revoked")
        again = await other.post("/auth/refresh", json={"refresh_token": reused["refresh_token"]})
        assert_problem(again, 401, "token_revoked")
        still = await other.get("/users/me", headers=bearer(live["access_token"]))
        assert still.status_code == 200


async def _seed_blocklist(session: AsyncSession) -> None:
    user = await make_user(session)
    assert user.id is not None
    now = utcnow()
    session.add_all(
        [
            RevokedToken(id="expired-jti", expires_at=now - HOUR),
            RevokedToken(id="live-jti", expires_at=now + HOUR),
            AuthSession(id="expired-sid", user_id=user.id, expires_at=now - HOUR),
            AuthSession(id="live-sid", user_id=user.id, expires_at=now + HOUR),
        ]
    )
    await session.commit()


async def _remaining(session: AsyncSession) -> tuple[set[str], set[str]]:
    revoked = set((await session.exec(select(RevokedToken.id))).all())
    sessions = set((await session.exec(select(col(AuthSession.id)))).all())
    await session.commit()
    return revoked, sessions


async def test_purge_forgets_only_expired_entries(app: FastAPI, session: AsyncSession) -> None:
    await _seed_blocklist(session)

    async with app.state.database.session(write=True) as writer:
        purged = await auth_service.purge_expired(writer)

    assert purged == 2
    assert await _remaining(session) == ({"live-jti"}, {"live-sid"})


async def test_start_up_purges_expired_entries(
    session: AsyncSession, app_factory: AppFactory
) -> None:
    await _seed_blocklist(session)

    async with app_factory():
        assert await _remaining(session) == ({"live-jti"}, {"live-sid"})


async def test_a_revoked_token_stays_refused_after_a_purge(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    await client.post("/auth/logout", headers=bearer(pair["access_token"]))

    async with app.state.database.session(write=True) as writer:
        assert await auth_service.purge_expired(writer) == 0

    response = await client.get("/users/me", headers=bearer(pair["access_token"]))
    assert_problem(response, 401, "token_revoked")


def _client(application: FastAPI) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=application), base_url="http://test/api/v1")


async def _purged_soon(session: AsyncSession) -> bool:
    """Whether the seeded expired entries disappear within two seconds."""
    for _ in range(200):
        if await _remaining(session) == ({"live-jti"}, {"live-sid"}):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_expired_entries_are_purged_periodically(
    session: AsyncSession, app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "PURGE_INTERVAL_SECONDS", 0.01)
    async with app_factory():
        # Seeded after start-up: only the periodic purge can remove these.
        await _seed_blocklist(session)
        assert await _purged_soon(session)


async def test_a_failed_periodic_purge_is_retried(
    session: AsyncSession, app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[int] = []
    real_purge = auth_service.purge_expired

    async def flaky_purge(db_session: AsyncSession) -> int:
        if len(failures) < 2:  # the start-up purge, then the first periodic one
            failures.append(1)
            if len(failures) == 2:
                raise RuntimeError("database hiccup")
        return await real_purge(db_session)

    monkeypatch.setattr(main, "PURGE_INTERVAL_SECONDS", 0.01)
    monkeypatch.setattr(auth_service, "purge_expired", flaky_purge)
    async with app_factory():
        await _seed_blocklist(session)
        assert await _purged_soon(session)
    assert len(failures) == 2


async def test_logout_all_ends_the_current_session_even_if_unregistered(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    registered = await session.get(AuthSession, claims_of(pair["access_token"])["sid"])
    await session.delete(registered)
    await session.commit()

    response = await client.post("/auth/logout-all", headers=bearer(pair["access_token"]))

    assert response.status_code == 204
    gone = await client.get("/users/me", headers=bearer(pair["access_token"]))
    assert_problem(gone, 401, "token_revoked")
