"""Concurrent requests against a real server: of 20 racing for one thing, exactly one wins.

A uvicorn process serves the test database, and 20 connections opened beforehand send their
requests at once, so the requests really overlap in the server and in the database instead
of being serialized by an in-process transport.
"""

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.config import Settings
from fasttrack.tasks.models import Task
from fasttrack.users.models import User
from tests.factories import (
    DEFAULT_PASSWORD,
    TEST_SECRET,
    make_project,
    make_task,
    make_user,
)
from tests.servers import free_port, server

RACERS: Final = 20


@pytest.fixture(scope="module")
def server_url(app: FastAPI, settings: Settings) -> Iterator[str]:
    """`fasttrack serve` on the test session's database (whose tables `app` created)."""
    port = free_port()
    argv = [str(Path(sys.executable).parent / "fasttrack"), "serve", "--port", str(port)]
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": TEST_SECRET,
        "BCRYPT_ROUNDS": "4",
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    with server([*argv, "--no-migrate"], port=port, env=env) as url:
        yield url


@pytest.fixture
async def http(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=RACERS, max_keepalive_connections=RACERS)
    async with httpx.AsyncClient(base_url=f"{server_url}/api/v1", limits=limits) as client:
        # Open every connection first: the race then starts at one moment, not one
        # TCP handshake after another.
        warm = await asyncio.gather(*(client.get(f"{server_url}/health") for _ in range(RACERS)))
        assert {response.status_code for response in warm} == {200}
        yield client


async def _race(
    client: httpx.AsyncClient, method: str, url: str, requests: list[dict[str, Any]]
) -> list[httpx.Response]:
    return await asyncio.gather(*(client.request(method, url, **request) for request in requests))


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


async def _login(client: httpx.AsyncClient, user: User) -> dict[str, Any]:
    response = await client.post(
        "/auth/login", json={"email": user.email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


async def test_of_concurrent_refreshes_with_one_token_exactly_one_succeeds(
    http: httpx.AsyncClient, session: AsyncSession
) -> None:
    pair = await _login(http, await make_user(session))

    responses = await _race(
        http, "POST", "/auth/refresh", [{"json": {"refresh_token": pair["refresh_token"]}}] * RACERS
    )

    assert _statuses(responses) == {200: 1, 401: RACERS - 1}
    for response in responses:
        if response.status_code == 401:
            assert response.json()["code"] == "token_revoked"


async def test_of_concurrent_registrations_of_one_email_exactly_one_succeeds(
    http: httpx.AsyncClient, session: AsyncSession
) -> None:
    # The same address in different letter cases: unique case-insensitively.
    emails = [
        "Racer@Example.com" if number % 2 else "racer@example.COM" for number in range(RACERS)
    ]

    responses = await _race(
        http,
        "POST",
        "/auth/register",
        [{"json": {"email": email, "password": DEFAULT_PASSWORD}} for email in emails],
    )

    assert _statuses(responses) == {201: 1, 409: RACERS - 1}
    accounts = (await session.exec(select(User).where(User.email == "racer@example.com"))).all()
    assert len(accounts) == 1


async def test_of_concurrent_patches_with_one_if_match_exactly_one_applies(
    http: httpx.AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session)
    task = await make_task(session, project=await make_project(session, owner=owner))
    headers = {"Authorization": f"Bearer {(await _login(http, owner))['access_token']}"}
    read = await http.get(f"/tasks/{task.id}", headers=headers)
    assert read.status_code == 200
    version = task.version
    if_match = {**headers, "If-Match": read.headers["etag"]}

    responses = await _race(
        http,
        "PATCH",
        f"/tasks/{task.id}",
        [{"json": {"title": f"Title {number}"}, "headers": if_match} for number in range(RACERS)],
    )

    assert _statuses(responses) == {200: 1, 412: RACERS - 1}
    (winner,) = [response.json() for response in responses if response.status_code == 200]
    stored = (await session.exec(select(Task).where(Task.id == task.id))).one()
    await session.refresh(stored)
    assert (stored.title, stored.version) == (winner["title"], version + 1)
