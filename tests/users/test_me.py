"""GET and PATCH /users/me: the caller's own account."""

from datetime import datetime

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import (
    DEFAULT_PASSWORD,
    assert_problem,
    bearer,
    login,
    make_user,
    token_pair,
)

NEW_PASSWORD = "a brand new passphrase"


async def test_get_me_returns_the_callers_account(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, display_name="Ada")
    response = await client.get("/users/me", headers=await login(client, user))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.id
    assert (body["email"], body["display_name"], body["role"]) == (user.email, "Ada", "user")
    assert "password" not in response.text
    assert "hashed" not in response.text
    assert _time(body["updated_at"]).utcoffset() is not None


async def test_patch_me_changes_the_display_name(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    headers = await login(client, user)
    before = (await client.get("/users/me", headers=headers)).json()

    response = await client.patch("/users/me", headers=headers, json={"display_name": "  Ada  "})

    assert response.status_code == 200
    assert response.json()["display_name"] == "Ada"
    after = (await client.get("/users/me", headers=headers)).json()
    assert after["display_name"] == "Ada"
    assert _time(after["updated_at"]) > _time(before["updated_at"])
    assert after["created_at"] == before["created_at"]


async def test_an_empty_patch_changes_nothing(client: AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session, display_name="Ada")
    headers = await login(client, user)
    response = await client.patch("/users/me", headers=headers, json={})
    assert response.status_code == 200
    assert response.json()["display_name"] == "Ada"


@pytest.mark.parametrize(
    "changes",
    [
        {"display_name": None},
        {"display_name": " "},
        {"display_name": "nul \x00"},
        {"display_name": "x" * 101},
        {"role": "admin"},
        {"is_active": False},
        {"email": "other@example.com"},
        {"password": NEW_PASSWORD},
        {"current_password": DEFAULT_PASSWORD},
        {"password": None, "current_password": DEFAULT_PASSWORD},
        {"password": "short", "current_password": DEFAULT_PASSWORD},
        {"password": "é" * 40, "current_password": DEFAULT_PASSWORD},
        {"password": NEW_PASSWORD, "current_password": "é" * 40},
    ],
    ids=[
        "null display name",
        "blank display name",
        "NUL in display name",
        "display name too long",
        "role",
        "is_active",
        "email",
        "password without current_password",
        "current_password without password",
        "null password",
        "password too short",
        "password over 72 bytes",
        "current_password over 72 bytes",
    ],
)
async def test_an_invalid_self_update_is_a_validation_problem_and_changes_nothing(
    client: AsyncClient, session: AsyncSession, changes: dict[str, object]
) -> None:
    user = await make_user(session, display_name="Ada")
    headers = await login(client, user)

    response = await client.patch("/users/me", headers=headers, json=changes)

    assert_problem(response, 422, "validation_error")
    me = (await client.get("/users/me", headers=headers)).json()
    assert (me["display_name"], me["role"], me["is_active"]) == ("Ada", "user", True)
    assert (await token_pair(client, user)).get("access_token")


async def test_patch_me_needs_an_access_token(client: AsyncClient) -> None:
    response = await client.patch("/users/me", json={"display_name": "Ada"})
    assert_problem(response, 401, "not_authenticated")


async def test_a_wrong_current_password_is_forbidden_and_changes_nothing(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, display_name="Ada")
    current, other = await token_pair(client, user), await token_pair(client, user)

    response = await client.patch(
        "/users/me",
        headers=bearer(current["access_token"]),
        json={"display_name": "Eve", "password": NEW_PASSWORD, "current_password": "wrong one"},
    )

    assert_problem(response, 403, "invalid_current_password")
    assert (await token_pair(client, user, DEFAULT_PASSWORD))["access_token"]
    refused = await client.post("/auth/login", json={"email": user.email, "password": NEW_PASSWORD})
    assert_problem(refused, 401, "invalid_credentials")
    me = await client.get("/users/me", headers=bearer(other["access_token"]))
    assert me.json()["display_name"] == "Ada"


async def test_changing_the_password_ends_every_other_session(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    current, other = await token_pair(client, user), await token_pair(client, user)

    response = await client.patch(
        "/users/me",
        headers=bearer(current["access_token"]),
        json={"password": NEW_PASSWORD, "current_password": DEFAULT_PASSWORD},
    )

    assert response.status_code == 200
    assert "password" not in response.json()
    # The caller keeps working, with both tokens of the current session.
    assert (await client.get("/users/me", headers=bearer(current["access_token"]))).is_success
    rotated = await client.post("/auth/refresh", json={"refresh_token": current["refresh_token"]})
    assert rotated.status_code == 200
    # Every other session is over.
    stale = await client.get("/users/me", headers=bearer(other["access_token"]))
    assert_problem(stale, 401, "token_revoked")
    stale_refresh = await client.post(
        "/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    assert_problem(stale_refresh, 401, "token_revoked")
    # The new password logs in, the old one no longer does.
    assert await token_pair(client, user, NEW_PASSWORD)
    old = await client.post("/auth/login", json={"email": user.email, "password": DEFAULT_PASSWORD})
    assert_problem(old, 401, "invalid_credentials")


async def test_password_and_display_name_change_together(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    headers = await login(client, user)

    response = await client.patch(
        "/users/me",
        headers=headers,
        json={
            "display_name": "Ada",
            "password": "éééé",  # 8 bytes: the minimum counts bytes, not characters
            "current_password": DEFAULT_PASSWORD,
        },
    )

    assert response.status_code == 200
    assert response.json()["display_name"] == "Ada"
    assert await token_pair(client, user, "éééé")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
