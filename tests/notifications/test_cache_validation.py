"""The caches are only used while every change of the deployment reaches this process.

Several processes without Redis cannot tell each other anything: every request checks the
database. With Redis, a lost subscription turns the caches off until it is back, and they
then start empty, since what was published in between never arrived.

Tests marked `needs_redis` run with TEST_REDIS_URL set.
"""

import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.notifications import redis_broker
from tests.conftest import AppFactory
from tests.factories import assert_problem, login, make_project, make_task, make_user
from tests.redis_proxy import RedisProxy
from tests.statements import counting_statements

REDIS_URL = os.environ.get("TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="set TEST_REDIS_URL to run")
TIMEOUT: Final = 5.0
# An event from another process travels through Redis: it takes a moment to arrive.
EVENT_DELIVERY_SECONDS: Final = 1.0
# The caches' time to live where a change reaches no event.
SHORT_TTL: Final = 0.5


@asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test/api/v1") as c:
        yield c


async def _statements_of(
    client: AsyncClient, app: FastAPI, path: str, headers: dict[str, str]
) -> int:
    with counting_statements(app) as statements:
        response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return len(statements)


async def _me(client: AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/users/me", headers=headers)
    assert response.status_code == 200, response.text
    me: dict[str, Any] = response.json()
    return me


def _continuity(app: FastAPI) -> int | None:
    stretch: int | None = app.state.hub._broker.continuity()
    return stretch


async def _until_continuity(app: FastAPI, *, delivered: bool) -> None:
    with anyio.fail_after(TIMEOUT):
        while (_continuity(app) is not None) != delivered:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def _refused_within(client: AsyncClient, headers: dict[str, str], seconds: float) -> None:
    with anyio.fail_after(seconds):
        response = await client.get("/users/me", headers=headers)
        while response.status_code == 200:
            await anyio.sleep(0.01)
            response = await client.get("/users/me", headers=headers)
    assert_problem(response, 401, "token_revoked")


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_broker, "RECONNECT_DELAYS", (0.05,))
    monkeypatch.setattr(redis_broker, "SUBSCRIBE_TIMEOUT", TIMEOUT)


@pytest.fixture
async def redis_proxy() -> AsyncIterator[RedisProxy]:
    assert REDIS_URL is not None
    proxy = RedisProxy(REDIS_URL)
    await proxy.start()
    try:
        yield proxy
    finally:
        with contextlib.suppress(AssertionError):
            await proxy.cut()


# --- Several processes without Redis ------------------------------------------------------


async def test_one_process_without_redis_serves_checked_tokens_and_rows_from_its_caches(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    owner = await make_user(session)
    task = await make_task(session, project=await make_project(session, owner=owner))
    async with app_factory(workers=1, redis_url=None) as alone, _client(alone) as client:
        headers = await login(client, owner)
        path = f"/tasks/{task.id}"

        assert await _statements_of(client, alone, path, headers) == 2  # token, task
        assert await _statements_of(client, alone, path, headers) == 0


async def test_several_processes_without_redis_check_every_request_in_the_database(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    task = await make_task(session, project=project)
    async with app_factory(workers=2, redis_url=None) as worker, _client(worker) as client:
        headers = await login(client, owner)
        paths = ("/users/me", f"/tasks/{task.id}", f"/projects/{project.id}/tasks")

        first = [await _statements_of(client, worker, path, headers) for path in paths]
        again = [await _statements_of(client, worker, path, headers) for path in paths]

        assert first == again == [1, 2, 3]  # token; token + task; token + project + page
        assert len(worker.state.principals) == 0
        assert len(worker.state.task_cache) == 0
        assert len(worker.state.project_summaries) == 0


async def test_a_logout_through_one_process_without_redis_is_refused_by_the_other_at_once(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    user = await make_user(session)
    async with (
        app_factory(workers=2, redis_url=None) as first,
        app_factory(workers=2, redis_url=None) as second,
        _client(first) as first_client,
        _client(second) as second_client,
    ):
        headers = await login(first_client, user)
        assert (await second_client.get("/users/me", headers=headers)).status_code == 200

        assert (await first_client.post("/auth/logout", headers=headers)).status_code == 204

        # No event can reach the other process: it must not need one.
        refused = await second_client.get("/users/me", headers=headers)
        assert_problem(refused, 401, "token_revoked")


# --- With Redis ---------------------------------------------------------------------------


@needs_redis
async def test_several_processes_with_redis_use_their_caches(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    user = await make_user(session)
    async with app_factory(workers=2, redis_url=REDIS_URL) as worker, _client(worker) as client:
        await _until_continuity(worker, delivered=True)
        headers = await login(client, user)

        assert await _statements_of(client, worker, "/users/me", headers) == 1
        assert await _statements_of(client, worker, "/users/me", headers) == 0


@needs_redis
@pytest.mark.usefixtures("fast_reconnect")
async def test_while_the_redis_subscription_is_down_every_request_checks_the_database(
    app_factory: AppFactory, client: AsyncClient, session: AsyncSession, redis_proxy: RedisProxy
) -> None:
    user = await make_user(session)
    async with app_factory(redis_url=redis_proxy.url) as cut_off, _client(cut_off) as cut_client:
        await _until_continuity(cut_off, delivered=True)
        headers, other_session = await login(cut_client, user), await login(cut_client, user)
        assert await _statements_of(cut_client, cut_off, "/users/me", headers) == 1
        assert await _statements_of(cut_client, cut_off, "/users/me", headers) == 0

        await redis_proxy.cut()
        await _until_continuity(cut_off, delivered=False)

        assert await _statements_of(cut_client, cut_off, "/users/me", headers) == 1
        assert await _statements_of(cut_client, cut_off, "/users/me", headers) == 1
        # Another process (the test session's app) ends the session; its event cannot
        # reach the cut-off process, which refuses the token all the same.
        assert (await client.post("/auth/logout", headers=headers)).status_code == 204
        assert_problem(await cut_client.get("/users/me", headers=headers), 401, "token_revoked")
        assert (await cut_client.get("/users/me", headers=other_session)).status_code == 200


@needs_redis
@pytest.mark.usefixtures("fast_reconnect")
async def test_once_the_redis_subscription_is_back_the_caches_start_empty(
    app_factory: AppFactory, client: AsyncClient, session: AsyncSession, redis_proxy: RedisProxy
) -> None:
    user = await make_user(session)
    async with app_factory(redis_url=redis_proxy.url) as cut_off, _client(cut_off) as cut_client:
        await _until_continuity(cut_off, delivered=True)
        before = _continuity(cut_off)
        revoked, kept = await login(cut_client, user), await login(cut_client, user)
        for headers in (revoked, kept):
            await _statements_of(cut_client, cut_off, "/users/me", headers)
            assert await _statements_of(cut_client, cut_off, "/users/me", headers) == 0

        await redis_proxy.cut()
        await _until_continuity(cut_off, delivered=False)
        # Published while the process was not subscribed: it never hears of it.
        assert (await client.post("/auth/logout", headers=revoked)).status_code == 204
        await redis_proxy.start()
        await _until_continuity(cut_off, delivered=True)
        assert _continuity(cut_off) != before

        # Served from the cache just before the outage, and still refused at once.
        assert_problem(await cut_client.get("/users/me", headers=revoked), 401, "token_revoked")
        assert await _statements_of(cut_client, cut_off, "/users/me", kept) == 1
        assert await _statements_of(cut_client, cut_off, "/users/me", kept) == 0


@asynccontextmanager
async def _two_processes(
    app_factory: AppFactory,
) -> AsyncIterator[tuple[tuple[FastAPI, AsyncClient], tuple[FastAPI, AsyncClient]]]:
    """Two applications on the test database and Redis, as two workers would be."""
    async with (
        app_factory(workers=2) as first,
        app_factory(workers=2) as second,
        _client(first) as first_client,
        _client(second) as second_client,
    ):
        await _until_continuity(first, delivered=True)
        await _until_continuity(second, delivered=True)
        yield (first, first_client), (second, second_client)


async def _warm(client: AsyncClient, app: FastAPI, *tokens: dict[str, str]) -> None:
    for headers in tokens:
        await _statements_of(client, app, "/users/me", headers)
        assert await _statements_of(client, app, "/users/me", headers) == 0


@needs_redis
async def test_a_logout_through_one_process_is_refused_by_the_other_right_after(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    user = await make_user(session)
    async with _two_processes(app_factory) as ((_, first_client), (second, second_client)):
        headers, other_session = await login(first_client, user), await login(first_client, user)
        await _warm(second_client, second, headers, other_session)

        assert (await first_client.post("/auth/logout", headers=headers)).status_code == 204

        # The other process serves this token from its cache until the revocation event
        # arrives through Redis: a moment, well under a second.
        await _refused_within(second_client, headers, EVENT_DELIVERY_SECONDS)
        assert (await second_client.get("/users/me", headers=other_session)).status_code == 200


@needs_redis
async def test_a_new_display_name_through_one_process_reaches_the_cache_of_the_other(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    user = await make_user(session, display_name="Before")
    async with _two_processes(app_factory) as ((_, first_client), (second, second_client)):
        headers = await login(first_client, user)
        await _warm(second_client, second, headers)

        body = {"display_name": "After"}
        assert (await first_client.patch("/users/me", json=body, headers=headers)).is_success

        # The invalidation travels through Redis to the other process: a moment, under
        # a second.
        with anyio.fail_after(EVENT_DELIVERY_SECONDS):
            name = (await _me(second_client, headers))["display_name"]
            while name != "After":
                await anyio.sleep(0.01)
                name = (await _me(second_client, headers))["display_name"]


@needs_redis
@pytest.mark.usefixtures("fast_reconnect")
async def test_a_logout_through_a_process_cut_off_from_redis_reaches_the_others_in_a_ttl(
    app_factory: AppFactory, session: AsyncSession, redis_proxy: RedisProxy
) -> None:
    user = await make_user(session)
    async with (
        app_factory(workers=2, redis_url=redis_proxy.url, cache_ttl=SHORT_TTL) as cut_off,
        app_factory(workers=2, cache_ttl=SHORT_TTL) as connected,
        _client(cut_off) as cut_client,
        _client(connected) as connected_client,
    ):
        await _until_continuity(cut_off, delivered=True)
        await _until_continuity(connected, delivered=True)
        headers = await login(connected_client, user)
        await _warm(connected_client, connected, headers)

        # Only this process loses Redis: the other one stays subscribed throughout.
        await redis_proxy.cut()
        await _until_continuity(cut_off, delivered=False)
        assert (await cut_client.post("/auth/logout", headers=headers)).status_code == 204
        assert_problem(await cut_client.get("/users/me", headers=headers), 401, "token_revoked")

        # The revocation is committed, but the event that would have told the other
        # process could not be sent: what it cached expires within the time to live.
        await _refused_within(connected_client, headers, SHORT_TTL + EVENT_DELIVERY_SECONDS)
