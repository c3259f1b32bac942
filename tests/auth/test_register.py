"""POST /auth/register."""

import asyncio
from collections.abc import Callable
from datetime import datetime

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import assert_problem, login, make_admin, make_user

PASSWORD = "correct horse battery"


async def test_register_creates_an_account(client: AsyncClient) -> None:
    response = await client.post(
        "/auth/register",
        json={"email": "Ada.Lovelace@Example.COM", "password": PASSWORD, "display_name": " Ada "},
    )

    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"http://test/api/v1/users/{body['id']}"
    assert set(body) == {
        "id",
        "email",
        "display_name",
        "role",
        "is_active",
        "created_at",
        "updated_at",
    }
    assert body["email"] == "ada.lovelace@example.com"
    assert body["display_name"] == "Ada"
    assert (body["role"], body["is_active"]) == ("user", True)
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None
    assert PASSWORD not in response.text
    logged_in = await client.post(
        "/auth/login", json={"email": "ADA.LOVELACE@example.com", "password": PASSWORD}
    )
    assert logged_in.status_code == 200


async def test_the_location_of_a_new_account_serves_it(
    client: AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    created = await client.post(
        "/auth/register", json={"email": "new@example.com", "password": PASSWORD}
    )

    response = await client.get(created.headers["location"], headers=await login(client, admin))

    assert response.status_code == 200
    assert response.json() == created.json()


async def test_the_display_name_defaults_to_the_local_part(client: AsyncClient) -> None:
    response = await client.post(
        "/auth/register", json={"email": "Grace.Hopper@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    assert response.json()["display_name"] == "grace.hopper"


@pytest.mark.parametrize("case", [str.upper, str.title, str.lower])
async def test_an_email_taken_in_any_letter_case_is_a_conflict(
    client: AsyncClient, session: AsyncSession, case: Callable[[str], str]
) -> None:
    user = await make_user(session, email="taken@example.com")
    response = await client.post(
        "/auth/register", json={"email": case(user.email), "password": PASSWORD}
    )
    assert_problem(response, 409, "conflict")


async def test_a_duplicate_registration_changes_nothing(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, email="taken@example.com")
    await client.post(
        "/auth/register", json={"email": "TAKEN@example.com", "password": "other pw!"}
    )
    # The original account keeps its password.
    ok = await client.post(
        "/auth/login", json={"email": user.email, "password": "correct horse battery"}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("1234567", False),
        ("12345678", True),
        ("ééé", False),  # 6 bytes
        ("éééé", True),  # 4 characters, 8 bytes
        ("x" * 72, True),
        ("x" * 73, False),
        ("é" * 36, True),  # 72 bytes
        ("é" * 40, False),  # 40 characters, 80 bytes: bcrypt would read only 72
        ("😀" * 18, True),  # 72 bytes
        ("😀" * 19, False),
    ],
    ids=lambda value: f"{len(str(value).encode())}B" if isinstance(value, str) else str(value),
)
async def test_the_password_is_8_to_72_bytes(
    client: AsyncClient, password: str, accepted: bool
) -> None:
    response = await client.post(
        "/auth/register", json={"email": "new@example.com", "password": password}
    )
    if accepted:
        assert response.status_code == 201
    else:
        body = assert_problem(response, 422, "validation_error")
        assert [error["loc"] for error in body["errors"]] == [["body", "password"]]
        assert password not in response.text


def _email_of_length(length: int) -> str:
    # A 64-character local part and labels of at most 63: valid but for the total length.
    local = "a" * 64
    domain_length = length - len(local) - 1 - len(".com")
    labels = []
    while domain_length > 0:
        label = min(63, domain_length)
        if domain_length - label == 1:  # never leave a lone dot
            label -= 1
        labels.append("b" * label)
        domain_length -= label + 1
    return f"{local}@{'.'.join(labels)}.com"


async def test_an_email_of_254_characters_is_accepted(client: AsyncClient) -> None:
    email = _email_of_length(254)
    assert len(email) == 254
    response = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201
    assert response.json()["email"] == email


MISSING = object()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@"),
        ("email", _email_of_length(255)),
        ("email", MISSING),
        ("password", MISSING),
        ("display_name", "   "),
        ("display_name", "x" * 101),
        ("role", "admin"),
        ("is_active", False),
    ],
    ids=[
        "invalid email",
        "email without domain",
        "email of 255 characters",
        "missing email",
        "missing password",
        "whitespace-only display name",
        "display name of 101 characters",
        "role",
        "is_active",
    ],
)
async def test_an_invalid_registration_is_a_validation_problem(
    client: AsyncClient, field: str, value: object
) -> None:
    body = {"email": "a@example.com", "password": PASSWORD, field: value}
    if value is MISSING:
        del body[field]
    response = await client.post("/auth/register", json=body)
    problem = assert_problem(response, 422, "validation_error")
    assert [error["loc"] for error in problem["errors"]] == [["body", field]]


async def test_validation_errors_list_loc_msg_and_type_without_echoing_input(
    client: AsyncClient,
) -> None:
    secret = "my very secret password"
    response = await client.post(
        "/auth/register",
        json={"email": "a@example.com", "password": secret, "favourite_colour": "blue"},
    )
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"] == [
        {
            "loc": ["body", "favourite_colour"],
            "msg": "Extra inputs are not permitted",
            "type": "extra_forbidden",
        }
    ]
    assert secret not in response.text
    assert "blue" not in response.text


@pytest.mark.parametrize(
    "content",
    [b'{"email": "a@example.com", "password": ', b"", b"null", b"[]", b"\xff\xfe"],
    ids=["truncated", "empty", "null", "array", "not UTF-8"],
)
async def test_a_body_that_is_not_a_json_object_is_a_validation_problem(
    client: AsyncClient, content: bytes
) -> None:
    response = await client.post(
        "/auth/register", content=content, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "validation_error")


async def test_a_form_body_is_a_validation_problem(client: AsyncClient) -> None:
    response = await client.post(
        "/auth/register", data={"email": "a@example.com", "password": PASSWORD}
    )
    assert_problem(response, 422, "validation_error")


async def test_concurrent_registrations_of_one_email_create_one_account(
    client: AsyncClient,
) -> None:
    emails = ["race@example.com", "RACE@example.com", "Race@Example.com"] * 3

    responses = await asyncio.gather(
        *(client.post("/auth/register", json={"email": e, "password": PASSWORD}) for e in emails)
    )

    assert sorted(response.status_code for response in responses) == [201] + [409] * 8
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "conflict")
