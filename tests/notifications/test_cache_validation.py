"""The caches serve an entry only while they can prove it is what the database holds.

One process alone on a SQLite file keeps the versions itself; several processes share them
through Redis, so a change through one is refused or seen by the next request to any
other, with no event to wait for. Where nothing can prove an entry fresh (PostgreSQL or
several workers without Redis, a Redis that cannot be asked), every request checks the
database.

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

from fasttrack.core import freshness
from fasttrack.notifications import redis_broker
from tests.conftest import AppFactory
from tests.factories import assert_problem, login, make_project, make_task, make_user
from tests.redis_proxy import RedisProxy
from tests.statements import counting_statements

REDIS_URL = os.environ.get("TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="set TEST_REDIS_URL to run")
# Nothing listens there: every connection is refused at once.
UNREACHABLE_REDIS: Final = "redis://127.0.0.1:1/0"
TIMEOUT: Final = 5.0


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


def _alone_on_sqlite(app: FastAPI) -> bool:
    """Whether one process without Redis can prove its entries fresh: on SQLite it can
    rule out other processes; on PostgreSQL it cannot."""
    return str(app.state.settings.database_url).startswith("sqlite")


async def _stamping(app: FastAPI) -> None:
    """Wait until the app's validator gives stamps (with Redis: once an epoch is set)."""
    with anyio.fail_after(TIMEOUT):
        while await app.state.caches.freshness.stamp([]) is None:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def _warm_principal(client: AsyncClient, app: FastAPI, headers: dict[str, str]) -> None:
    """Check the token once, then prove the next check is served from the cache."""
    await _statements_of(client, app, "/users/me", headers)
    assert await _statements_of(client, app, "/users/me", headers) == 0


async def _warm_task(
    client: AsyncClient, app: FastAPI, task_id: int, headers: dict[str, str]
) -> None:
    await _warm_principal(client, app, headers)
    # A task's first read tells the cache its project, the second is stored.
    for _ in range(2):
        await _statements_of(client, app, f"/tasks/{task_id}", headers)
    assert await _statements_of(client, app, f"/tasks/{task_id}", headers) == 0


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps on a Redis that cannot be reached start at once, and find it again soon."""
    monkeypatch.setattr(redis_broker, "RECONNECT_DELAYS", (0.05,))
    monkeypatch.setattr(redis_broker, "SUBSCRIBE_TIMEOUT", 0.1)


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


# --- Without Redis ------------------------------------------------------------------------


async def test_one_process_without_redis_caches_only_on_sqlite(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    owner = await make_user(session)
    task = await make_task(session, project=await make_project(session, owner=owner))
    async with app_factory(workers=1, redis_url=None) as alone, _client(alone) as client:
        headers = await login(client, owner)
        path = f"/tasks/{task.id}"

        counts = [await _statements_of(client, alone, path, headers) for _ in range(4)]

        if _alone_on_sqlite(alone):
            # Token, task and the owner's access to its project; the token and the access
            # are stored, the task's project learnt; the task is stored; then everything
            # is served from the caches.
            assert counts == [3, 1, 0, 0]
            assert task.id in alone.state.task_cache
        else:
            # Other processes on the database cannot be ruled out: nothing is cached.
            assert counts == [3, 3, 3, 3]
            assert len(alone.state.principals) == len(alone.state.task_cache) == 0
            assert len(alone.state.project_access) == 0


async def test_several_workers_without_redis_check_every_request_in_the_database(
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

        # Token; token + task + access to its project; token + access + page.
        assert first == again == [1, 3, 3]
        assert len(worker.state.principals) == 0
        assert len(worker.state.task_cache) == 0
        assert len(worker.state.project_access) == 0
        assert len(worker.state.task_pages) == 0


async def test_a_logout_through_one_worker_without_redis_is_refused_by_another_at_once(
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
        for _ in range(2):
            assert (await second_client.get("/users/me", headers=headers)).status_code == 200

        assert (await first_client.post("/auth/logout", headers=headers)).status_code == 204

        # Nothing can tell the other worker: it must not need to be told.
        refused = await second_client.get("/users/me", headers=headers)
        assert_problem(refused, 401, "token_revoked")


# --- Two processes sharing Redis ----------------------------------------------------------


@asynccontextmanager
async def _two_processes(
    app_factory: AppFactory,
) -> AsyncIterator[tuple[tuple[FastAPI, AsyncClient], tuple[FastAPI, AsyncClient]]]:
    """Two applications on the test database and Redis, as two servers would be."""
    async with (
        app_factory(redis_url=REDIS_URL) as first,
        app_factory(redis_url=REDIS_URL) as second,
        _client(first) as first_client,
        _client(second) as second_client,
    ):
        await _stamping(first)
        await _stamping(second)
        yield (first, first_client), (second, second_client)


@needs_redis
async def test_a_logout_through_one_process_is_refused_by_the_other_at_the_next_request(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    user = await make_user(session)
    async with _two_processes(app_factory) as ((_, first_client), (second, second_client)):
        headers, other_session = await login(first_client, user), await login(first_client, user)
        await _warm_principal(second_client, second, headers)
        await _warm_principal(second_client, second, other_session)

        assert (await first_client.post("/auth/logout", headers=headers)).status_code == 204

        assert_problem(await second_client.get("/users/me", headers=headers), 401, "token_revoked")
        assert (await second_client.get("/users/me", headers=other_session)).status_code == 200


@needs_redis
async def test_a_new_display_name_through_one_process_is_seen_by_the_other_at_once(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    user = await make_user(session, display_name="Before")
    async with _two_processes(app_factory) as ((_, first_client), (second, second_client)):
        headers = await login(first_client, user)
        await _warm_principal(second_client, second, headers)

        body = {"display_name": "After"}
        response = await first_client.patch("/users/me", json=body, headers=headers)
        assert response.status_code == 200, response.text

        assert (await _me(second_client, headers))["display_name"] == "After"


@needs_redis
async def test_a_task_change_through_one_process_is_seen_by_the_others_next_read(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    owner = await make_user(session)
    task = await make_task(session, project=await make_project(session, owner=owner))
    assert task.id is not None
    async with _two_processes(app_factory) as ((_, first_client), (second, second_client)):
        headers = await login(first_client, owner)
        await _warm_task(second_client, second, task.id, headers)

        body = {"title": "After", "priority": "high"}
        changed = await first_client.patch(f"/tasks/{task.id}", json=body, headers=headers)
        assert changed.status_code == 200, changed.text

        seen = await second_client.get(f"/tasks/{task.id}", headers=headers)
        assert (seen.json()["title"], seen.json()["priority"]) == ("After", "high")
        assert seen.headers["etag"] == changed.headers["etag"]


@needs_redis
async def test_a_task_deletion_through_one_process_is_seen_by_the_others_next_read(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    owner = await make_user(session)
    task = await make_task(session, project=await make_project(session, owner=owner))
    assert task.id is not None
    async with _two_processes(app_factory) as ((_, first_client), (second, second_client)):
        headers = await login(first_client, owner)
        await _warm_task(second_client, second, task.id, headers)

        deleted = await first_client.delete(f"/tasks/{task.id}", headers=headers)
        assert deleted.status_code == 204

        gone = await second_client.get(f"/tasks/{task.id}", headers=headers)
        assert_problem(gone, 404, "not_found")


# --- A Redis that cannot be asked ---------------------------------------------------------


@pytest.mark.usefixtures("fast_reconnect")
async def test_without_a_reachable_redis_every_request_checks_the_database(
    app_factory: AppFactory, session: AsyncSession
) -> None:
    user = await make_user(session, display_name="Before")
    async with app_factory(redis_url=UNREACHABLE_REDIS) as cut_off, _client(cut_off) as client:
        headers = await login(client, user)

        counts = [await _statements_of(client, cut_off, "/users/me", headers) for _ in range(3)]
        assert counts == [1, 1, 1]
        assert len(cut_off.state.principals) == 0

        # A change is still made, and read back from the database.
        body = {"display_name": "After"}
        assert (await client.patch("/users/me", json=body, headers=headers)).status_code == 200
        assert (await _me(client, headers))["display_name"] == "After"
        assert await _statements_of(client, cut_off, "/users/me", headers) == 1


@needs_redis
@pytest.mark.usefixtures("fast_reconnect")
async def test_while_redis_is_cut_off_reads_check_the_database_and_after_the_caches_work(
    app_factory: AppFactory,
    client: AsyncClient,
    session: AsyncSession,
    redis_proxy: RedisProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Redis is asked again at once after a failure: the back-off is not under test here.
    monkeypatch.setattr(freshness, "REDIS_BACKOFF_SECONDS", 0.0)
    user = await make_user(session)
    async with app_factory(redis_url=redis_proxy.url) as cut_off, _client(cut_off) as cut_client:
        await _stamping(cut_off)
        revoked, kept = await login(cut_client, user), await login(cut_client, user)
        await _warm_principal(cut_client, cut_off, revoked)
        await _warm_principal(cut_client, cut_off, kept)

        await redis_proxy.cut()

        assert await _statements_of(cut_client, cut_off, "/users/me", kept) == 1
        assert await _statements_of(cut_client, cut_off, "/users/me", kept) == 1
        # Another process (the test session's app) ends a session, and moves the
        # versions in Redis: the cut-off process, not told, refuses the token all the same.
        assert (await client.post("/auth/logout", headers=revoked)).status_code == 204
        assert_problem(await cut_client.get("/users/me", headers=revoked), 401, "token_revoked")

        await redis_proxy.start()

        assert_problem(await cut_client.get("/users/me", headers=revoked), 401, "token_revoked")
        assert await _statements_of(cut_client, cut_off, "/users/me", kept) == 1
        assert await _statements_of(cut_client, cut_off, "/users/me", kept) == 0


@needs_redis
@pytest.mark.usefixtures("fast_reconnect")
async def test_a_change_made_while_redis_was_cut_off_reaches_the_others_once_it_is_back(
    app_factory: AppFactory,
    session: AsyncSession,
    redis_proxy: RedisProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(freshness, "FINISH_RETRY_DELAYS", (0.05,) * 40)
    user = await make_user(session)
    async with (
        app_factory(redis_url=redis_proxy.url) as cut_off,
        app_factory(redis_url=REDIS_URL, cache_ttl=60.0) as connected,
        _client(cut_off) as cut_client,
        _client(connected) as connected_client,
    ):
        await _stamping(cut_off)
        await _stamping(connected)
        headers = await login(connected_client, user)
        await _warm_principal(connected_client, connected, headers)

        # Only the writer loses Redis: it cannot move the versions the other one checks.
        await redis_proxy.cut()
        assert (await cut_client.post("/auth/logout", headers=headers)).status_code == 204
        assert_problem(await cut_client.get("/users/me", headers=headers), 401, "token_revoked")

        # It keeps trying: once Redis is back, the other process refuses the token.
        await redis_proxy.start()
        with anyio.fail_after(TIMEOUT):
            response = await connected_client.get("/users/me", headers=headers)
            while response.status_code == 200:
                await anyio.sleep(0.02)
                response = await connected_client.get("/users/me", headers=headers)
        assert_problem(response, 401, "token_revoked")
