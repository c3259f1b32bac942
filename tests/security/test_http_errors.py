"""HTTP-level refusals the OpenAPI fuzzing found: an exact `Allow`, and undecodable bodies."""

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.factories import assert_problem, login, make_user


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/tasks/1", "DELETE, GET, PATCH"),
        ("DELETE", "/projects/1/tasks", "GET, POST"),
        ("DELETE", "/users/me", "GET, PATCH"),
        ("PUT", "/users/me/tasks", "GET"),
        ("GET", "/notifications/read-all", "POST"),
    ],
)
async def test_a_405_allows_every_method_of_the_resource(
    client: AsyncClient, method: str, path: str, allowed: str
) -> None:
    # The router stops at the first route whose path matches, which serves one method only.
    response = await client.request(method, path)

    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed


async def test_a_body_that_is_not_utf8_is_a_validation_problem(
    client: AsyncClient, session: AsyncSession
) -> None:
    headers = {**await login(client, await make_user(session)), "Content-Type": "application/json"}

    response = await client.post("/projects", content=b'{"name": "\xff"}', headers=headers)

    body = assert_problem(response, 422, "validation_error")
    assert body["errors"] == [
        {"loc": ["body"], "msg": "The body is not valid UTF-8", "type": "json_invalid"}
    ]
