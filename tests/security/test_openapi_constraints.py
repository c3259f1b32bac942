"""The OpenAPI document and the API agree on the values a fuzzer rarely draws: each value is
judged by the document's own schema for the request and then sent. A value the schema
admits is never a 422; a value it refuses always is."""

from typing import Annotated, Any

import jsonschema_rs
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import EmailStr, StringConstraints, TypeAdapter
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.inputs import WHITESPACE
from fasttrack.core.pagination import CURSOR_PATTERN
from fasttrack.users.models import EMAIL_PATTERN, MAX_EMAIL_LENGTH
from tests.factories import DEFAULT_PASSWORD, login, make_admin, make_project, make_user

EMAILS = [
    "a@example.com",
    "A.B+c@Example.CO",
    "x@a--b.example",
    "!#$%&'*+/=?^_`{|}~-@example.com",
    "l" * 64 + "@example.com",
    "l" * 65 + "@example.com",
    "Name <a@example.com>",
    " a@example.com",
    "a@example.com ",
    "a@example.com\n",
    '"a"@example.com',
    "a..b@example.com",
    ".a@example.com",
    "a@example",
    "a@example.1",
    "a@-example.com",
    "a@ab--c.com",
    "a@xn--bcher-kva.ch",
    "a@example.test",
    "a@example.TEST",
    "a@localhost.localhost",
    "a@[127.0.0.1]",
    "ü@example.com",
    "a@bücher.example",
]
STRIPPED_TEXTS = [
    "ok",
    "  padded  ",
    "x" * 100,
    "x" * 101,
    "x" + " " * 300,
    "",
    " ",
    "\u3000\u2028\x85",
    "\x1c",
    "\u200b",
    "\ufeff",
    "nul \x00",
]


def _validator(app: FastAPI, path: str, method: str, media_type: str) -> Any:
    document = app.openapi()
    body = document["paths"][f"/api/v1{path}"][method]["requestBody"]
    schema = body["content"][media_type]["schema"]
    return jsonschema_rs.validator_for(
        {**schema, "components": document["components"]}, validate_formats=True
    )


def _assert_agree(
    admitted: bool, response_status: int, body: object, accepted: frozenset[int]
) -> None:
    if admitted:
        assert response_status in accepted, (body, response_status)
    else:
        assert response_status == 422, (body, response_status)


@pytest.mark.parametrize("email", EMAILS)
async def test_registration_refuses_exactly_the_emails_the_document_refuses(
    app: FastAPI, client: AsyncClient, email: str
) -> None:
    body = {"email": email, "password": DEFAULT_PASSWORD}

    response = await client.post("/auth/register", json=body)

    admitted = _validator(app, "/auth/register", "post", "application/json").is_valid(body)
    _assert_agree(admitted, response.status_code, body, frozenset({201}))


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.from_regex(EMAIL_PATTERN, fullmatch=True).filter(lambda e: len(e) <= MAX_EMAIL_LENGTH))
def test_email_validator_takes_every_address_the_pattern_admits(address: str) -> None:
    # The pattern narrows email-validator's rules and must not widen them.
    TypeAdapter(EmailStr).validate_python(address)


@pytest.mark.parametrize("name", STRIPPED_TEXTS)
async def test_a_stripped_text_is_refused_exactly_when_the_document_says(
    app: FastAPI, client: AsyncClient, session: AsyncSession, name: str
) -> None:
    headers = await login(client, await make_user(session))
    body = {"display_name": name}

    response = await client.patch("/users/me", json=body, headers=headers)

    admitted = _validator(app, "/users/me", "patch", "application/json").is_valid(body)
    _assert_agree(admitted, response.status_code, body, frozenset({200}))
    if admitted:
        assert response.json()["display_name"] == name.strip("".join(WHITESPACE))


def test_the_documented_whitespace_is_what_pydantic_strips() -> None:
    stripped = TypeAdapter(list[Annotated[str, StringConstraints(strip_whitespace=True)]])
    characters = [chr(point) for point in range(0x110000) if not 0xD800 <= point <= 0xDFFF]
    kept = stripped.validate_python(characters)

    removed = {c for c, left in zip(characters, kept, strict=True) if not left}

    assert removed == WHITESPACE


@pytest.mark.parametrize(
    ("password", "admitted"),
    [
        ("é" * 4, True),
        ("😀" * 2, True),
        ("a" * 72, True),
        ("😀" * 18, True),
        ("é" * 3 + "a", False),
        ("😀" * 18 + "a", False),
        ("a" * 73, False),
    ],
    ids=["8 bytes", "2 characters", "72 characters", "72 bytes", "7 bytes", "73 bytes", "73"],
)
async def test_a_password_is_bounded_by_its_documented_utf8_bytes(
    app: FastAPI, client: AsyncClient, password: str, admitted: bool
) -> None:
    schema = app.openapi()["components"]["schemas"]["UserCreate"]["properties"]["password"]
    bounds = schema["x-utf8-bytes"]
    body = {"email": "bytes@example.com", "password": password}

    response = await client.post("/auth/register", json=body)

    size = len(password.encode())
    assert (bounds["minimum"] <= size <= bounds["maximum"]) is admitted
    assert jsonschema_rs.validator_for(schema).is_valid(password) or not admitted
    _assert_agree(admitted, response.status_code, body, frozenset({201}))


@pytest.mark.parametrize(
    "body",
    [
        {"display_name": "Ada"},
        {"password": "new password 1", "current_password": DEFAULT_PASSWORD},
        {"password": "new password 1"},
        {"current_password": DEFAULT_PASSWORD},
    ],
    ids=["neither", "both", "password alone", "current_password alone"],
)
async def test_a_new_password_comes_with_the_current_one_as_documented(
    app: FastAPI, client: AsyncClient, session: AsyncSession, body: dict[str, str]
) -> None:
    headers = await login(client, await make_user(session))

    response = await client.patch("/users/me", json=body, headers=headers)

    admitted = _validator(app, "/users/me", "patch", "application/json").is_valid(body)
    _assert_agree(admitted, response.status_code, body, frozenset({200}))


@pytest.mark.parametrize("is_active", [False, True, 0, 1, "false", None])
async def test_a_flag_is_a_json_boolean(
    app: FastAPI, client: AsyncClient, session: AsyncSession, is_active: object
) -> None:
    headers = await login(client, await make_admin(session))
    other = await make_user(session)
    body = {"is_active": is_active}

    response = await client.patch(f"/users/{other.id}", json=body, headers=headers)

    admitted = _validator(app, "/users/{user_id}", "patch", "application/json").is_valid(body)
    _assert_agree(admitted, response.status_code, body, frozenset({200}))


@pytest.mark.parametrize("spelling", ["int", "float", "str", "bool"])
async def test_an_id_in_a_body_is_a_json_integer(
    app: FastAPI, client: AsyncClient, session: AsyncSession, spelling: str
) -> None:
    owner = await make_user(session)
    assert owner.id is not None
    project = await make_project(session, owner=owner)
    assignee_id = {"int": owner.id, "float": float(owner.id), "str": str(owner.id), "bool": True}
    body = {"title": "t", "assignee_id": assignee_id[spelling]}

    response = await client.post(
        f"/projects/{project.id}/tasks", json=body, headers=await login(client, owner)
    )

    admitted = _validator(app, "/projects/{project_id}/tasks", "post", "application/json")
    _assert_agree(admitted.is_valid(body), response.status_code, body, frozenset({201}))
    if response.status_code == 201:
        assert response.json()["assignee_id"] == owner.id


@pytest.mark.parametrize("grant_type", [None, "", "password", "client_credentials"])
async def test_the_token_form_takes_the_documented_grant_types(
    app: FastAPI, client: AsyncClient, session: AsyncSession, grant_type: str | None
) -> None:
    user = await make_user(session)
    form = {"username": user.email, "password": DEFAULT_PASSWORD}
    if grant_type is not None:
        form["grant_type"] = grant_type

    response = await client.post("/auth/token", data=form)

    validator = _validator(app, "/auth/token", "post", "application/x-www-form-urlencoded")
    _assert_agree(validator.is_valid(form), response.status_code, form, frozenset({200}))


async def test_every_cursor_the_api_issues_has_the_documented_shape(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    for _ in range(3):
        await make_project(session, owner=owner)
    headers = await login(client, owner)
    page = (await client.get("/projects", params={"limit": 1}, headers=headers)).json()
    schema = app.openapi()["paths"]["/api/v1/projects"]["get"]["parameters"]
    cursor_schema = next(p["schema"] for p in schema if p["name"] == "cursor")

    assert jsonschema_rs.validator_for({"pattern": CURSOR_PATTERN}).is_valid(page["next_cursor"])
    assert jsonschema_rs.validator_for(cursor_schema).is_valid(page["next_cursor"])
    for malformed in ["", "garbage", ".", "MTA.", "é.é", "\x00", "A" * 201]:
        assert not jsonschema_rs.validator_for(cursor_schema).is_valid(malformed)
        response = await client.get("/projects", params={"cursor": malformed}, headers=headers)
        assert response.status_code == 422
