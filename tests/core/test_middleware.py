"""Request ids and security headers, on every kind of response."""

import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from fasttrack.core.middleware import API_CSP, DOCS_CSP

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
async def root_client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client at the root, where /health and the docs live."""
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.mark.parametrize(
    "request_id",
    ["abc", "7b0f7d4c-7d27-4e4b-9a4e-1f0e3c3b7c1d", "trace:a.b_c-d", "x" * 128],
    ids=["short", "uuid", "punctuation", "128 characters"],
)
async def test_a_sane_request_id_is_echoed(root_client: AsyncClient, request_id: str) -> None:
    response = await root_client.get("/health", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["", "x" * 129, "two words", "id\twith\ttabs", "<script>", "café"],
    ids=["empty", "129 characters", "space", "tab", "markup", "non-ASCII"],
)
async def test_an_insane_request_id_is_replaced_by_a_uuid(
    root_client: AsyncClient, request_id: str
) -> None:
    response = await root_client.get(
        "/no-such-page", headers={b"X-Request-ID": request_id.encode()}
    )
    issued = response.headers["x-request-id"]
    assert issued != request_id
    assert uuid.UUID(issued).version == 4
    assert response.json()["request_id"] == issued


async def test_each_request_gets_its_own_id(root_client: AsyncClient) -> None:
    first, second = await root_client.get("/health"), await root_client.get("/health")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/health", 200), ("/api/v1/users/me", 401), ("/nowhere", 404), ("/openapi.json", 200)],
)
async def test_api_responses_carry_the_security_headers(
    root_client: AsyncClient, path: str, status: int
) -> None:
    response = await root_client.get(path)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["content-security-policy"] == API_CSP


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_docs_get_a_policy_that_lets_them_run(
    root_client: AsyncClient, path: str
) -> None:
    response = await root_client.get(path)
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == DOCS_CSP
