"""Every error is an RFC 9457 problem, including the ones no route raised on purpose."""

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from httpx import ASGITransport, AsyncClient
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.errors import is_database_unavailable
from tests.conftest import AppFactory
from tests.factories import assert_problem, login, make_admin, make_user

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "code", "request_id"}


@pytest.fixture
async def crashing_app(app_factory: AppFactory) -> AsyncIterator[FastAPI]:
    """A fresh application with one extra route that fails unexpectedly."""
    async with app_factory() as application:

        async def explode() -> None:
            raise RuntimeError("connection string postgres://admin:hunter2@db")

        async def explode_midway() -> StreamingResponse:
            async def chunks() -> AsyncIterator[bytes]:
                yield b"first chunk"
                raise RuntimeError("lost the rest")

            return StreamingResponse(chunks(), media_type="text/plain")

        application.add_api_route("/explode", explode)
        application.add_api_route("/explode-midway", explode_midway)
        yield application


async def test_an_unknown_route_is_a_not_found_problem(client: AsyncClient) -> None:
    response = await client.get("/no/such/thing", headers={"X-Request-ID": "req-404"})

    body = assert_problem(response, 404, "not_found")
    assert set(body) == PROBLEM_KEYS
    assert body == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "No such endpoint",
        "instance": "/api/v1/no/such/thing",
        "code": "not_found",
        "request_id": "req-404",
    }


async def test_a_wrong_method_is_a_method_not_allowed_problem(client: AsyncClient) -> None:
    response = await client.delete("/users/me")

    body = assert_problem(response, 405, "method_not_allowed")
    assert set(body) == PROBLEM_KEYS
    assert body["request_id"] == response.headers["x-request-id"]
    assert "GET" in response.headers["allow"]


async def test_a_query_validation_error_lists_the_parameter(
    client: AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    response = await client.get(
        "/users", headers=await login(client, admin), params={"limit": "many"}
    )

    body = assert_problem(response, 422, "validation_error")
    assert set(body) == {*PROBLEM_KEYS, "errors"}
    assert body["errors"] == [
        {
            "loc": ["query", "limit"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]


async def test_an_unexpected_exception_is_an_internal_error_without_details(
    crashing_app: FastAPI,
) -> None:
    transport = ASGITransport(app=crashing_app)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/explode", headers={"X-Request-ID": "req-500"})

    body = assert_problem(response, 500, "internal_error")
    assert set(body) == PROBLEM_KEYS
    assert body["detail"] == "An unexpected error occurred"
    assert (body["instance"], body["request_id"]) == ("/explode", "req-500")
    assert response.headers["x-request-id"] == "req-500"
    assert response.headers["x-content-type-options"] == "nosniff"
    for leak in ("Traceback", "RuntimeError", "hunter2", "explode()"):
        assert leak not in response.text


async def test_a_crash_after_the_response_started_is_not_answered_twice(
    crashing_app: FastAPI,
) -> None:
    # The status line is gone already: the only honest thing is to cut the body short.
    transport = ASGITransport(app=crashing_app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/explode-midway")

    assert response.status_code == 200
    assert response.content == b"first chunk"


async def test_the_application_keeps_serving_after_a_crash(crashing_app: FastAPI) -> None:
    transport = ASGITransport(app=crashing_app)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/explode")).status_code == 500
        assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/login"),  # through the ORM session
        ("GET", "/users/me"),  # through the prepared reads
        ("GET", "/projects/1/tasks"),
    ],
)
async def test_a_request_needing_an_unreachable_database_is_service_unavailable(
    app_factory: AppFactory, unreachable_database_url: str, method: str, path: str
) -> None:
    async with app_factory(lifespan=False, database_url=unreachable_database_url) as offline:
        pair, _ = offline.state.tokens.issue_pair(1, sid="offline-session")
        transport = ASGITransport(app=offline)
        async with AsyncClient(transport=transport, base_url="http://test/api/v1") as http:
            response = await http.request(
                method,
                path,
                json={"email": "ada@example.com", "password": "long enough"},
                headers={"Authorization": f"Bearer {pair.access_token}"},
            )

    assert_problem(response, 503, "service_unavailable")
    assert response.headers["retry-after"] == "1"
    assert "missing" not in response.text


async def test_a_conflict_is_a_problem(client: AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    response = await client.post(
        "/auth/register", json={"email": user.email, "password": "long enough"}
    )
    body = assert_problem(response, 409, "conflict")
    assert set(body) == PROBLEM_KEYS


class DriverError(Exception):
    """A driver exception carrying a SQLSTATE, as asyncpg's do."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def _dbapi_error(sqlstate: str | None, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("SELECT 1", None, DriverError(sqlstate), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        pytest.param(_dbapi_error("57P03"), True, id="starting up"),
        pytest.param(_dbapi_error("57P01"), True, id="administrator shutdown"),
        pytest.param(_dbapi_error("08003"), True, id="connection does not exist"),
        pytest.param(_dbapi_error("53300"), True, id="too many connections"),
        pytest.param(_dbapi_error(None, invalidated=True), True, id="died mid-statement"),
        pytest.param(OperationalError("SELECT 1", None, DriverError(None)), True, id="operational"),
        pytest.param(ConnectionRefusedError(), True, id="refused"),
        pytest.param(_dbapi_error("42P01"), False, id="undefined table"),
        pytest.param(_dbapi_error(None), False, id="no sqlstate"),
        pytest.param(IntegrityError("INSERT", None, DriverError("23505")), False, id="unique"),
        pytest.param(RuntimeError("boom"), False, id="not a database error"),
    ],
)
def test_which_database_errors_mean_unavailable(error: Exception, unavailable: bool) -> None:
    assert is_database_unavailable(error) is unavailable


@pytest.mark.parametrize(("sqlstate", "status"), [("57P03", 503), ("42P01", 500)])
async def test_a_driver_error_is_503_only_when_the_database_is_unavailable(
    app_factory: AppFactory, sqlstate: str, status: int
) -> None:
    async with app_factory() as application:

        async def query() -> None:
            raise _dbapi_error(sqlstate)

        application.add_api_route("/query", query)
        async with AsyncClient(
            transport=ASGITransport(app=application), base_url="http://test"
        ) as http:
            response = await http.get("/query")

    body = assert_problem(
        response, status, "service_unavailable" if status == 503 else "internal_error"
    )
    assert "SELECT" not in body["detail"]
