"""The rate limit as a client sees it: headers, 429s, keys, the auth limit, exemptions."""

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.config import Settings
from tests.apps import client_for, running_app
from tests.factories import login, make_user

ME = "/api/v1/users/me"


def limited_app(settings: Settings, **overrides: Any) -> AbstractAsyncContextManager[FastAPI]:
    return running_app(settings, rate_limit_enabled=True, **overrides)


async def test_requests_within_the_limit_pass_with_limit_headers(settings: Settings) -> None:
    async with limited_app(settings, rate_limit_requests=3) as app, client_for(app) as client:
        responses = [await client.get(ME) for _ in range(3)]
    assert [r.status_code for r in responses] == [401, 401, 401]
    assert [r.headers["x-ratelimit-limit"] for r in responses] == ["3", "3", "3"]
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["2", "1", "0"]


async def test_the_request_past_the_limit_is_a_429_problem(settings: Settings) -> None:
    async with limited_app(settings, rate_limit_requests=2) as app, client_for(app) as client:
        for _ in range(2):
            assert (await client.get(ME)).status_code == 401
        refused = await client.get(ME, headers={"X-Request-ID": "limit-check-1"})

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= settings.rate_limit_window
    assert refused.headers["x-ratelimit-limit"] == "2"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-request-id"] == "limit-check-1"
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert refused.headers["content-security-policy"].startswith("default-src 'none'")
    body = refused.json()
    assert body["status"] == 429
    assert body["code"] == "rate_limited"
    assert body["title"] == "Too Many Requests"
    assert body["instance"] == ME
    assert body["request_id"] == "limit-check-1"


async def _sleep_until_window_fraction(fraction: float) -> None:
    """Sleep until `fraction` of the way into the next one-second window."""
    await asyncio.sleep(1 - time.time() % 1 + fraction)


async def test_the_window_slides(settings: Settings) -> None:
    # A fixed window would hand out all 4 again right after its boundary; a sliding one
    # frees requests only as the old ones age out of the last second.
    async with (
        limited_app(settings, rate_limit_requests=4, rate_limit_window=1) as app,
        client_for(app) as client,
    ):
        await _sleep_until_window_fraction(0.05)
        assert [(await client.get(ME)).status_code for _ in range(4)] == [401] * 4
        assert (await client.get(ME)).status_code == 429

        await _sleep_until_window_fraction(0.45)
        statuses = [(await client.get(ME)).status_code for _ in range(4)]
    allowed = statuses.count(401)
    assert 0 < allowed < 4, statuses
    assert statuses == [401] * allowed + [429] * (4 - allowed)


async def test_each_user_has_a_budget_of_their_own_behind_one_address(
    settings: Settings, session: AsyncSession
) -> None:
    alice, bob = await make_user(session), await make_user(session)
    async with (
        limited_app(settings, rate_limit_requests=2) as app,
        client_for(app, base_url="http://test/api/v1") as client,
    ):
        alice_auth, bob_auth = await login(client, alice), await login(client, bob)
        alice_statuses = [
            (await client.get("/users/me", headers=alice_auth)).status_code for _ in range(3)
        ]
        bob_response = await client.get("/users/me", headers=bob_auth)
        anonymous = await client.get("/users/me")

    assert alice_statuses == [200, 200, 429]
    assert bob_response.status_code == 200
    assert bob_response.headers["x-ratelimit-remaining"] == "1"
    assert anonymous.status_code == 401
    assert anonymous.headers["x-ratelimit-remaining"] == "1"


async def test_an_invalid_token_counts_against_the_address(settings: Settings) -> None:
    async with limited_app(settings, rate_limit_requests=2) as app, client_for(app) as client:
        garbage = {"Authorization": "Bearer not-a-jwt"}
        statuses = [(await client.get(ME, headers=garbage)).status_code for _ in range(2)]
        anonymous = await client.get(ME)
    assert statuses == [401, 401]
    assert anonymous.status_code == 429


async def test_different_addresses_are_limited_apart(settings: Settings) -> None:
    async with limited_app(settings, rate_limit_requests=1) as app:
        async with client_for(app, client_ip="198.51.100.1") as first:
            assert (await first.get(ME)).status_code == 401
            assert (await first.get(ME)).status_code == 429
        async with client_for(app, client_ip="198.51.100.2") as second:
            assert (await second.get(ME)).status_code == 401


async def test_auth_routes_have_a_stricter_limit_per_address(
    settings: Settings, session: AsyncSession
) -> None:
    user = await make_user(session)
    wrong = {"email": user.email, "password": "not the password"}
    async with (
        limited_app(settings, rate_limit_requests=50, auth_rate_limit_requests=2) as app,
        client_for(app, base_url="http://test/api/v1") as client,
    ):
        attempts = [await client.post("/auth/login", json=wrong) for _ in range(3)]
        token_form = await client.post("/auth/token", data={"username": "a", "password": "b"})
        elsewhere = await client.get("/users/me")

    assert [a.status_code for a in attempts] == [401, 401, 429]
    assert attempts[0].headers["x-ratelimit-limit"] == "2"
    assert attempts[2].json()["code"] == "rate_limited"
    # login, register, token and refresh share the one auth budget of the address
    assert token_form.status_code == 429
    assert elsewhere.status_code == 401
    assert elsewhere.headers["x-ratelimit-limit"] == "50"


async def test_health_metrics_and_docs_are_not_limited(settings: Settings) -> None:
    exempt = ("/health", "/health/db", "/metrics", "/openapi.json", "/docs", "/redoc")
    async with limited_app(settings, rate_limit_requests=1) as app, client_for(app) as client:
        for path in exempt:
            for _ in range(3):
                response = await client.get(path)
                assert response.status_code == 200, path
                assert "x-ratelimit-limit" not in response.headers
        assert (await client.get(ME)).headers["x-ratelimit-remaining"] == "0"


async def test_rejections_are_counted_in_the_metrics(settings: Settings) -> None:
    async with limited_app(settings, rate_limit_requests=1) as app, client_for(app) as client:
        for _ in range(3):
            await client.get(ME)
        metrics = (await client.get("/metrics")).text
    assert 'fasttrack_rate_limit_rejections_total{limit="default"} 2.0' in metrics


async def test_disabled_rate_limiting_adds_nothing(app: FastAPI) -> None:
    assert app.state.rate_limiter is None
    async with client_for(app) as client:
        responses = [await client.get(ME) for _ in range(3)]
    assert all("x-ratelimit-limit" not in r.headers for r in responses)


async def test_rate_limited_operations_document_429(app: FastAPI) -> None:
    operations = app.openapi()["paths"]
    assert "429" in operations["/api/v1/users/me"]["get"]["responses"]
    assert "429" in operations["/api/v1/auth/login"]["post"]["responses"]
    assert "429" not in operations["/health"]["get"]["responses"]
