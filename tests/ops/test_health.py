"""GET /health and /health/db: no auth, and a fast 503 when the database is gone."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from fasttrack import __version__
from tests.conftest import AppFactory
from tests.factories import assert_problem


async def _get(application: FastAPI, path: str) -> Response:
    async with AsyncClient(
        transport=ASGITransport(app=application), base_url="http://test"
    ) as http:
        return await http.get(path)


async def test_health_reports_version_and_uptime(app: FastAPI) -> None:
    response = await _get(app, "/health")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "version", "uptime_s"}
    assert (body["status"], body["version"]) == ("ok", __version__)
    assert isinstance(body["uptime_s"], float)
    assert body["uptime_s"] >= 0


async def test_uptime_grows(app: FastAPI) -> None:
    first = (await _get(app, "/health")).json()["uptime_s"]
    await asyncio.sleep(0.01)
    assert (await _get(app, "/health")).json()["uptime_s"] > first


async def test_database_health_reports_latency(app: FastAPI) -> None:
    response = await _get(app, "/health/db")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "database", "latency_ms"}
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert 0 <= body["latency_ms"] < 2000


async def test_an_unreachable_database_is_service_unavailable_at_once(
    app_factory: AppFactory, unreachable_database_url: str
) -> None:
    async with app_factory(lifespan=False, database_url=unreachable_database_url) as offline:
        started = time.perf_counter()
        response = await _get(offline, "/health/db")
        elapsed = time.perf_counter() - started

    assert_problem(response, 503, "service_unavailable")
    assert response.headers["retry-after"] == "1"
    assert elapsed < 2


async def test_the_service_starts_while_its_database_is_down(
    app_factory: AppFactory, unreachable_database_url: str
) -> None:
    async with app_factory(database_url=unreachable_database_url) as offline:
        alive = await _get(offline, "/health")
        database = await _get(offline, "/health/db")

    assert alive.status_code == 200
    assert_problem(database, 503, "service_unavailable")


@asynccontextmanager
async def _never_connects(*_: Any, **__: Any) -> AsyncIterator[None]:
    await asyncio.Event().wait()
    yield


async def test_a_database_that_does_not_answer_in_time_is_service_unavailable(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_factory(lifespan=False, database_timeout=0.2) as stuck:
        with monkeypatch.context() as patch:
            patch.setattr(AsyncEngine, "connect", _never_connects)
            started = time.perf_counter()
            response = await _get(stuck, "/health/db")
            elapsed = time.perf_counter() - started

    body = assert_problem(response, 503, "service_unavailable")
    assert body["detail"] == "The database did not answer in time"
    assert 0.2 <= elapsed < 2
