"""CORS: allowed origins get the headers a browser needs, every other origin gets none."""

from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient

from fasttrack.core.config import Settings
from tests.apps import client_for, running_app

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    async with (
        running_app(
            settings, cors_origins=[ALLOWED], rate_limit_enabled=True, rate_limit_requests=2
        ) as app,
        client_for(app, base_url="http://test/api/v1") as client,
    ):
        yield client


def _preflight(origin: str, headers: str = "authorization,content-type,if-match") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": headers,
    }


async def test_a_preflight_from_an_allowed_origin_passes(cors_client: AsyncClient) -> None:
    response = await cors_client.options("/users/me", headers=_preflight(ALLOWED))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "PATCH" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "if-match", "x-request-id"):
        assert header in allowed
    assert response.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in response.headers


async def test_a_preflight_from_another_origin_gets_no_allow_origin(
    cors_client: AsyncClient,
) -> None:
    response = await cors_client.options("/users/me", headers=_preflight(OTHER))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_a_preflight_asking_for_other_headers_is_refused(cors_client: AsyncClient) -> None:
    response = await cors_client.options("/users/me", headers=_preflight(ALLOWED, "x-secret"))
    assert response.status_code == 400


async def test_responses_expose_the_api_headers_to_allowed_origins(
    cors_client: AsyncClient,
) -> None:
    response = await cors_client.get("/users/me", headers={"Origin": ALLOWED})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert exposed >= {
        "x-request-id",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "retry-after",
        "etag",
        "location",
    }


async def test_other_origins_get_no_cors_headers(cors_client: AsyncClient) -> None:
    response = await cors_client.get("/users/me", headers={"Origin": OTHER})
    assert response.status_code == 401
    assert "access-control-allow-origin" not in response.headers


async def test_preflights_are_not_counted_and_429s_stay_readable(
    cors_client: AsyncClient,
) -> None:
    for _ in range(3):
        assert (
            await cors_client.options("/users/me", headers=_preflight(ALLOWED))
        ).status_code == 200
    statuses = [(await cors_client.get("/users/me", headers={"Origin": ALLOWED})) for _ in range(3)]
    assert [r.status_code for r in statuses] == [401, 401, 429]
    assert statuses[2].headers["access-control-allow-origin"] == ALLOWED


async def test_without_origins_there_is_no_cors(client: AsyncClient) -> None:
    response = await client.options("/users/me", headers=_preflight(ALLOWED))
    assert "access-control-allow-origin" not in response.headers
