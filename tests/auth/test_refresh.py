"""POST /auth/refresh: rotation, reuse detection and the race between concurrent refreshes."""

import asyncio

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import assert_problem, bearer, claims_of, make_user, token_pair


async def refresh(client: AsyncClient, refresh_token: str) -> dict[str, str]:
    response = await client.post("/auth/refresh", json={"refresh_token": refresh_token})
    assert response.status_code == 200, response.text
    pair: dict[str, str] = response.json()
    return pair


async def test_refresh_rotates_the_pair(client: AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    first = await token_pair(client, user)

    response = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert second["token_type"] == "bearer"
    assert second["expires_in"] == 900
    assert claims_of(second["refresh_token"])["sid"] == claims_of(first["refresh_token"])["sid"]
    assert second["refresh_token"] != first["refresh_token"]
    me = await client.get("/users/me", headers=bearer(second["access_token"]))
    assert me.json()["id"] == user.id
    # The new refresh token rotates in turn.
    assert (await refresh(client, second["refresh_token"]))["access_token"]


async def test_a_rotated_refresh_token_is_refused(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    first = await token_pair(client, user)
    await refresh(client, first["refresh_token"])

    again = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})

    assert_problem(again, 401, "token_revoked")


async def test_refresh_reuse_revokes_the_session(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    first = await token_pair(client, user)
    other_device = await token_pair(client, user)
    second = await refresh(client, first["refresh_token"])

    reused = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(reused, 401, "token_revoked")

    # Every token of the session is dead, including the pair that replaced the reused one.
    for access in (first["access_token"], second["access_token"]):
        assert_problem(await client.get("/users/me", headers=bearer(access)), 401, "token_revoked")
    assert_problem(
        await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}),
        401,
        "token_revoked",
    )
    # Another session of the same user is not touched.
    assert (await client.get("/users/me", headers=bearer(other_device["access_token"]))).is_success
    assert await refresh(client, other_device["refresh_token"])


async def test_concurrent_refreshes_with_one_token_let_exactly_one_win(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)

    responses = await asyncio.gather(
        *(
            client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            for _ in range(20)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [401] * 19
    losers = [response for response in responses if response.status_code == 401]
    assert {response.json()["code"] for response in losers} == {"token_revoked"}
    # The losers presented a token already rotated: reuse, so the session is revoked and
    # even the winner's new pair stops working.
    winner = next(response for response in responses if response.status_code == 200).json()
    assert_problem(
        await client.get("/users/me", headers=bearer(winner["access_token"])), 401, "token_revoked"
    )
    assert_problem(
        await client.post("/auth/refresh", json={"refresh_token": winner["refresh_token"]}),
        401,
        "token_revoked",
    )


async def test_an_access_token_is_refused_as_a_refresh_token(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)

    response = await client.post("/auth/refresh", json={"refresh_token": pair["access_token"]})

    assert_problem(response, 401, "invalid_token")
    assert await refresh(client, pair["refresh_token"])


async def test_a_refresh_token_is_refused_as_an_access_token(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)

    response = await client.get("/users/me", headers=bearer(pair["refresh_token"]))

    assert_problem(response, 401, "invalid_token")
    assert (await client.get("/users/me", headers=bearer(pair["access_token"]))).is_success


async def test_refresh_after_logout_is_token_revoked(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    logout = await client.post("/auth/logout", headers=bearer(pair["access_token"]))
    assert logout.status_code == 204

    response = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})

    assert_problem(response, 401, "token_revoked")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"refresh_token": ""},
        {"refresh_token": None},
        {"refresh_token": "x" * 4097},
        {"refresh_token": "x", "access_token": "y"},
        ["refresh_token"],
    ],
    ids=["missing", "empty", "null", "too long", "unknown field", "not an object"],
)
async def test_a_malformed_refresh_body_is_a_validation_problem(
    client: AsyncClient, body: object
) -> None:
    response = await client.post("/auth/refresh", json=body)
    assert_problem(response, 422, "validation_error")
