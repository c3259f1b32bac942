"""SPEC §3 security headers on every kind of response, and a docs CSP that lets the docs run."""

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response

API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _assert_common(response: Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/health", 200),  # JSON
        ("/api/v1/users/me", 401),  # problem details
        ("/api/v1/nowhere", 404),  # routing error
        ("/metrics", 200),  # plain text
        ("/openapi.json", 200),
    ],
)
async def test_api_responses_get_the_strict_policy(app: FastAPI, path: str, status: int) -> None:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get(path)
    assert response.status_code == status
    _assert_common(response)
    assert response.headers["content-security-policy"] == API_CSP


@pytest.mark.parametrize(
    "path", ["/docs", "/docs/oauth2-redirect", "/redoc", "/static/docs/swagger-ui-bundle.js"]
)
async def test_docs_get_a_policy_that_lets_them_run(app: FastAPI, path: str) -> None:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get(path)
    assert response.status_code == 200
    _assert_common(response)
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    # Own origin only: no CDN, no fonts service; inline bootstrap scripts and ReDoc's
    # blob: worker are what the two UIs need.
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self' 'unsafe-inline'"
    assert policy["style-src"] == "'self' 'unsafe-inline'"
    assert policy["worker-src"] == "'self' blob:"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
