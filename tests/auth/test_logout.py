"""POST /auth/logout and /auth/logout-all."""

import time

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import (
    assert_problem,
    bearer,
    claims_of,
    make_user,
    sign,
    token_pair,
)


async def is_alive(client: AsyncClient, pair: dict[str, str]) -> bool:
    """Whether the pair's access token is still accepted (a read, so nothing changes)."""
    response = await client.get("/users/me", headers=bearer(pair["access_token"]))
    if response.status_code == 200:
        return True
    assert_problem(response, 401, "token_revoked")
    return False


async def test_logout_revokes_the_access_token_and_its_session(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    other_device = await token_pair(client, user)

    response = await client.post("/auth/logout", headers=bearer(pair["access_token"]))

    assert response.status_code == 204
    assert response.content == b""
    assert not await is_alive(client, pair)
    refresh = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_problem(refresh, 401, "token_revoked")
    assert await is_alive(client, other_device)


async def test_logout_ends_a_session_refreshed_since_login(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    first = await token_pair(client, user)
    rotated = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    second = rotated.json()

    await client.post("/auth/logout", headers=bearer(second["access_token"]))

    # The session, not a single token, is revoked: the older access token dies as well.
    assert not await is_alive(client, first)
    assert not await is_alive(client, second)


async def test_logout_twice_is_refused_the_second_time(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    assert (await client.post("/auth/logout", headers=bearer(pair["access_token"]))).is_success

    again = await client.post("/auth/logout", headers=bearer(pair["access_token"]))

    assert_problem(again, 401, "token_revoked")


async def test_logout_with_a_refresh_token_also_ends_that_session(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    current, stolen, kept = [await token_pair(client, user) for _ in range(3)]

    response = await client.post(
        "/auth/logout",
        headers=bearer(current["access_token"]),
        json={"refresh_token": stolen["refresh_token"]},
    )

    assert response.status_code == 204
    assert not await is_alive(client, current)
    assert not await is_alive(client, stolen)
    assert await is_alive(client, kept)


async def test_logout_accepts_an_expired_refresh_token_of_the_caller(
    client: AsyncClient, session: AsyncSession
) -> None:
    # An expired refresh token is useless, but still names a session to end: one whose
    # later refresh tokens may be alive.
    user = await make_user(session)
    current, other = await token_pair(client, user), await token_pair(client, user)
    now = int(time.time())
    expired = sign({**claims_of(other["refresh_token"]), "iat": now - 7200, "exp": now - 3600})

    response = await client.post(
        "/auth/logout", headers=bearer(current["access_token"]), json={"refresh_token": expired}
    )

    assert response.status_code == 204
    assert not await is_alive(client, other)


async def test_logout_with_another_users_refresh_token_is_refused_and_changes_nothing(
    client: AsyncClient, session: AsyncSession
) -> None:
    caller, victim = await make_user(session), await make_user(session)
    caller_pair, victim_pair = await token_pair(client, caller), await token_pair(client, victim)

    response = await client.post(
        "/auth/logout",
        headers=bearer(caller_pair["access_token"]),
        json={"refresh_token": victim_pair["refresh_token"]},
    )

    assert_problem(response, 401, "invalid_token")
    assert await is_alive(client, caller_pair)
    assert await is_alive(client, victim_pair)


@pytest.mark.parametrize("kind", ["access token", "forged refresh token"])
async def test_logout_with_an_invalid_refresh_token_is_refused(
    client: AsyncClient, session: AsyncSession, kind: str
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    token = (
        pair["access_token"]
        if kind == "access token"
        else sign(claims_of(pair["refresh_token"]), key="another-secret-key-that-is-long-enough")
    )

    response = await client.post(
        "/auth/logout", headers=bearer(pair["access_token"]), json={"refresh_token": token}
    )

    assert_problem(response, 401, "invalid_token")
    assert await is_alive(client, pair)


@pytest.mark.parametrize(
    "body",
    [{"refresh_token": ""}, {"token": "x"}, [1]],
    ids=["empty refresh token", "unknown field", "not an object"],
)
async def test_a_malformed_logout_body_is_a_validation_problem(
    client: AsyncClient, session: AsyncSession, body: object
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)

    response = await client.post("/auth/logout", headers=bearer(pair["access_token"]), json=body)

    assert_problem(response, 422, "validation_error")
    assert await is_alive(client, pair)


async def test_logout_with_an_empty_object_ends_only_the_current_session(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair, other = await token_pair(client, user), await token_pair(client, user)

    response = await client.post("/auth/logout", headers=bearer(pair["access_token"]), json={})

    assert response.status_code == 204
    assert not await is_alive(client, pair)
    assert await is_alive(client, other)


@pytest.mark.parametrize("path", ["/auth/logout", "/auth/logout-all"])
async def test_logging_out_needs_an_access_token(client: AsyncClient, path: str) -> None:
    assert_problem(await client.post(path), 401, "not_authenticated")


async def test_logout_all_ends_every_session_of_the_caller_only(
    client: AsyncClient, session: AsyncSession
) -> None:
    user, neighbour = await make_user(session), await make_user(session)
    sessions = [await token_pair(client, user) for _ in range(3)]
    rotated = await client.post(
        "/auth/refresh", json={"refresh_token": sessions[1]["refresh_token"]}
    )
    sessions.append(rotated.json())
    neighbours = await token_pair(client, neighbour)

    response = await client.post("/auth/logout-all", headers=bearer(sessions[0]["access_token"]))

    assert response.status_code == 204
    for pair in sessions:
        assert not await is_alive(client, pair)
        refresh = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert_problem(refresh, 401, "token_revoked")
    assert await is_alive(client, neighbours)
    # Logging in again starts a fresh, working session.
    assert await is_alive(client, await token_pair(client, user))


async def test_logout_with_the_current_sessions_refresh_token_ends_just_that_session(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair, other = await token_pair(client, user), await token_pair(client, user)

    response = await client.post(
        "/auth/logout",
        headers=bearer(pair["access_token"]),
        json={"refresh_token": pair["refresh_token"]},
    )

    assert response.status_code == 204
    assert not await is_alive(client, pair)
    assert await is_alive(client, other)
