"""POST /auth/login and /auth/token."""

from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.db import Database
from tests.factories import (
    DEFAULT_PASSWORD,
    assert_problem,
    bearer,
    claims_of,
    make_user,
    token_pair,
)
from tests.statements import listening_to_statements


async def test_login_returns_a_bearer_pair(client: AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    response = await client.post(
        "/auth/login", json={"email": user.email.upper(), "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert response.headers["cache-control"] == "no-store"
    me = await client.get("/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == user.email


@pytest.mark.parametrize("case", ["wrong_password", "unknown_email"])
async def test_bad_credentials_are_indistinguishable(
    client: AsyncClient, session: AsyncSession, case: str
) -> None:
    user = await make_user(session)
    email = user.email if case == "wrong_password" else "nobody@example.com"
    password = "not the password" if case == "wrong_password" else DEFAULT_PASSWORD
    response = await client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "invalid_credentials"
    assert response.json()["detail"] == "Incorrect e-mail or password"


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    wrong_password = await client.post(
        "/auth/login", json={"email": user.email, "password": "not the password"}
    )
    unknown_email = await client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": DEFAULT_PASSWORD}
    )

    def comparable(response: Response) -> tuple[int, dict[str, str], dict[str, object]]:
        body = response.json()
        del body["request_id"]
        headers = {name: response.headers[name] for name in ("content-type", "www-authenticate")}
        return response.status_code, headers, body

    assert comparable(wrong_password) == comparable(unknown_email)


async def test_the_oauth2_password_form_logs_in(client: AsyncClient, session: AsyncSession) -> None:
    # What the "Authorize" button of the interactive docs sends.
    user = await make_user(session)
    response = await client.post(
        "/auth/token",
        data={
            "grant_type": "password",
            "username": user.email.upper(),
            "password": DEFAULT_PASSWORD,
        },
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["token_type"] == "bearer"
    me = await client.get("/users/me", headers=bearer(response.json()["access_token"]))
    assert me.json()["id"] == user.id


async def test_the_oauth2_form_refuses_bad_credentials_like_login(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    response = await client.post(
        "/auth/token", data={"username": user.email, "password": "not the password"}
    )
    assert_problem(response, 401, "invalid_credentials")


@pytest.mark.parametrize("endpoint", ["/auth/login", "/auth/token"])
async def test_a_deactivated_user_with_the_right_password_is_forbidden(
    client: AsyncClient, session: AsyncSession, endpoint: str
) -> None:
    user = await make_user(session, is_active=False)
    response = await _login(client, endpoint, user.email, DEFAULT_PASSWORD)
    assert_problem(response, 403, "account_disabled")


@pytest.mark.parametrize("endpoint", ["/auth/login", "/auth/token"])
async def test_a_deactivated_user_with_a_wrong_password_learns_nothing(
    client: AsyncClient, session: AsyncSession, endpoint: str
) -> None:
    # Only the right password may reveal that the account exists and is disabled.
    user = await make_user(session, is_active=False)
    response = await _login(client, endpoint, user.email, "not the password")
    assert_problem(response, 401, "invalid_credentials")


@pytest.mark.parametrize("endpoint", ["/auth/login", "/auth/token"])
@pytest.mark.parametrize("password", ["é" * 40, "x" * 73], ids=["80 bytes in 40 chars", "73 chars"])
async def test_a_password_longer_than_bcrypt_reads_is_a_validation_problem(
    client: AsyncClient, session: AsyncSession, endpoint: str, password: str
) -> None:
    user = await make_user(session)
    response = await _login(client, endpoint, user.email, password)
    problem = assert_problem(response, 422, "validation_error")
    assert [error["loc"] for error in problem["errors"]] == [["body", "password"]]
    assert password not in response.text


async def test_a_72_byte_password_is_checked(client: AsyncClient, session: AsyncSession) -> None:
    password = "é" * 36
    user = await make_user(session, password=password)
    assert (await _login(client, "/auth/login", user.email, password)).status_code == 200


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"email": "a@example.com"}, ["body", "password"]),
        ({"email": "a@example.com", "password": ""}, ["body", "password"]),
        ({"email": "not-an-email", "password": DEFAULT_PASSWORD}, ["body", "email"]),
        ({"email": "a@example.com", "password": DEFAULT_PASSWORD, "otp": "1"}, ["body", "otp"]),
    ],
    ids=["missing password", "empty password", "invalid email", "unknown field"],
)
async def test_a_malformed_login_is_a_validation_problem(
    client: AsyncClient, body: dict[str, str], loc: list[str]
) -> None:
    response = await client.post("/auth/login", json=body)
    problem = assert_problem(response, 422, "validation_error")
    assert [error["loc"] for error in problem["errors"]] == [loc]


async def test_login_with_malformed_json_is_a_validation_problem(client: AsyncClient) -> None:
    response = await client.post(
        "/auth/login",
        content=b'{"email": "a@example.com",',
        headers={"content-type": "application/json"},
    )
    problem = assert_problem(response, 422, "validation_error")
    assert [error["type"] for error in problem["errors"]] == ["json_invalid"]


@pytest.mark.parametrize(
    ("form", "loc"),
    [
        ({"username": "not-an-email", "password": DEFAULT_PASSWORD}, ["body", "username"]),
        ({"password": DEFAULT_PASSWORD}, ["body", "username"]),
        (
            {"username": "a@example.com", "password": DEFAULT_PASSWORD, "grant_type": "x"},
            ["body", "grant_type"],
        ),
    ],
    ids=["invalid username", "missing username", "wrong grant type"],
)
async def test_a_malformed_token_form_is_a_validation_problem(
    client: AsyncClient, form: dict[str, str], loc: list[str]
) -> None:
    response = await client.post("/auth/token", data=form)
    problem = assert_problem(response, 422, "validation_error")
    assert [error["loc"] for error in problem["errors"]] == [loc]


async def test_every_login_starts_a_new_session(client: AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    first, second = await token_pair(client, user), await token_pair(client, user)
    assert claims_of(first["access_token"])["sid"] != claims_of(second["access_token"])["sid"]


@pytest.mark.parametrize("endpoint", ["/auth/login", "/auth/token"])
async def test_a_login_reads_on_the_readers_and_writes_its_session_in_one_statement(
    client: AsyncClient, session: AsyncSession, app: FastAPI, endpoint: str
) -> None:
    user = await make_user(session)
    database: Database = app.state.database
    seen: list[tuple[str, Engine]] = []

    def record(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append((statement.split(maxsplit=1)[0].upper(), conn.engine))

    engines = (database.write_engine, database.engine, database.single_statement_engine)
    with listening_to_statements(engines, record):
        response = await _login(client, endpoint, user.email, DEFAULT_PASSWORD)

    assert response.status_code == 200, response.text
    # Not in a transaction of the writer (on SQLite the only one): the lookup on the
    # readers, the new session in autocommit, behind the writer's turn for that alone.
    assert seen == [
        ("SELECT", database.engine.sync_engine),
        ("INSERT", database.single_statement_engine.sync_engine),
    ]


async def _login(client: AsyncClient, endpoint: str, email: str, password: str) -> Response:
    if endpoint == "/auth/token":
        return await client.post(endpoint, data={"username": email, "password": password})
    return await client.post(endpoint, json={"email": email, "password": password})
