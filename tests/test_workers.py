"""`fasttrack serve --workers 2` on PostgreSQL + Redis behaves as one service."""

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from fasttrack.ratelimit.limiter import KEY_PREFIX
from tests.servers import free_port, server

DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(
    not DATABASE_URL.startswith("postgresql") or REDIS_URL is None,
    reason="set TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL to run",
)
LIMIT = 10
BURST = 60
ME_ROUTE = "/api/v1/users/me"


def _fresh_get(url: str) -> httpx.Response:
    # A new connection each time, so the kernel hands requests to either worker.
    return httpx.get(url, headers={"Connection": "close"})


def _allowed_and_refused(metrics: str) -> tuple[float, float]:
    """The anonymous GETs of /users/me one process let through (401) and refused (429)."""
    counts = {"401": 0.0, "429": 0.0}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if (
                sample.name == "fasttrack_http_requests_total"
                and sample.labels["status"] in counts
                and sample.labels["route"] in (ME_ROUTE, "<unmatched>")
            ):
                counts[sample.labels["status"]] += sample.value
    return counts["401"], counts["429"]


def test_two_workers_share_one_rate_limit(app: FastAPI) -> None:
    assert REDIS_URL is not None
    with Redis.from_url(REDIS_URL) as redis:
        stale = list(redis.scan_iter(match=f"{KEY_PREFIX}*"))
        if stale:
            redis.delete(*stale)
    port = free_port()
    argv = [str(Path(sys.executable).parent / "fasttrack"), "serve", "--port", str(port)]
    argv += ["--workers", "2", "--no-migrate"]  # the test session created the tables
    env = {
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_REQUESTS": str(LIMIT),
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": "a-secret-for-the-workers-test-of-48-characters!!",
    }
    with server(argv, port=port, env=env) as base_url:
        account = {"email": "workers@example.com", "password": "correct horse battery"}
        assert httpx.post(f"{base_url}/api/v1/auth/register", json=account).status_code == 201
        login = httpx.post(f"{base_url}/api/v1/auth/login", json=account)
        assert login.status_code == 200
        token = login.json()["access_token"]
        me = httpx.get(f"{base_url}{ME_ROUTE}", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["email"] == account["email"]

        with ThreadPoolExecutor(max_workers=16) as pool:
            burst = list(pool.map(_fresh_get, [f"{base_url}{ME_ROUTE}"] * BURST))
            # Each process counts only what it answered: sample both of them.
            samples = pool.map(_fresh_get, [f"{base_url}/metrics"] * 40)
            per_process = {_allowed_and_refused(response.text) for response in samples}

    statuses = [response.status_code for response in burst]
    assert statuses.count(401) == LIMIT
    assert statuses.count(429) == BURST - LIMIT
    if len(per_process) == 1:  # both workers answered exactly the same numbers
        ((allowed, refused),) = per_process
        assert (2 * allowed, 2 * refused) == (LIMIT, BURST - LIMIT)
    else:
        assert len(per_process) == 2, per_process
        assert all(allowed + refused > 0 for allowed, refused in per_process), per_process
        assert sum(allowed for allowed, _ in per_process) == LIMIT
        assert sum(refused for _, refused in per_process) == BURST - LIMIT
