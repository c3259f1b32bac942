"""Two real server processes on one database: what one has answered, the other never
contradicts, however they were started.

Each is a plain `uvicorn --factory fasttrack.main:create_app` process, as two containers
or any process manager would start them (nothing tells either of them about the other).
Every round warms the reading process's caches, writes through the other process, then
reads through the first one the moment the write has answered.

Modes: two processes on one SQLite file (the suite's SQLite run), on PostgreSQL without
Redis, and on PostgreSQL with Redis (TEST_DATABASE_URL and TEST_REDIS_URL).
READ_AFTER_WRITE_ROUNDS sets the rounds of each kind (1000).
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Final

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import DEFAULT_PASSWORD, TEST_SECRET
from tests.servers import free_port, server

ROUNDS: Final = int(os.environ.get("READ_AFTER_WRITE_ROUNDS", "1000"))
DATABASE_URL: Final = os.environ.get("TEST_DATABASE_URL", "")
REDIS_URL: Final = os.environ.get("TEST_REDIS_URL")
BIN: Final = Path(sys.executable).parent
needs_postgres = pytest.mark.skipif(
    not DATABASE_URL.startswith("postgresql"), reason="set TEST_DATABASE_URL (PostgreSQL) to run"
)
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="set TEST_REDIS_URL to run")


class Pair:
    """A writer and a reader process, and an account to use them with."""

    def __init__(self, writer: str, reader: str, email: str) -> None:
        self.write = httpx.Client(base_url=f"{writer}/api/v1", timeout=30)
        self.read = httpx.Client(base_url=f"{reader}/api/v1", timeout=30)
        self._account = {"email": email, "password": DEFAULT_PASSWORD}
        registered = self.write.post("/auth/register", json=self._account)
        assert registered.status_code == 201, registered.text
        self.headers = self.login()

    def login(self, account: dict[str, str] | None = None) -> dict[str, str]:
        response = self.write.post("/auth/login", json=account or self._account)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def another_account(self) -> tuple[int, dict[str, str]]:
        """A second user, registered through the writer: its id and authorization headers."""
        account = {**self._account, "email": f"other-{self._account['email']}"}
        registered = self.write.post("/auth/register", json=account)
        assert registered.status_code == 201, registered.text
        return registered.json()["id"], self.login(account)

    def close(self) -> None:
        self.write.close()
        self.read.close()


def _serve(stack: ExitStack, env: dict[str, str]) -> str:
    port = free_port()
    argv = [str(BIN / "uvicorn"), "--factory", "fasttrack.main:create_app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return stack.enter_context(server(argv, port=port, env=env))


@pytest.fixture
def processes(
    request: pytest.FixtureRequest, tmp_path: Path, app: FastAPI
) -> Iterator[tuple[str, str]]:
    """Two processes on one database, in the mode the test is parametrized with (the
    session's `app` has migrated the test database)."""
    mode: str = request.param
    env = {
        "SECRET_KEY": TEST_SECRET,
        "BCRYPT_ROUNDS": "4",
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": "",
        "ENVIRONMENT": "test",
    }
    if mode == "sqlite":
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/fasttrack.db"
        subprocess.run(  # noqa: S603  (the project's own command)
            [str(BIN / "fasttrack"), "migrate"], env={**os.environ, **env}, check=True
        )
    else:
        env["DATABASE_URL"] = DATABASE_URL  # migrated by the test session
        if mode == "postgresql+redis":
            assert REDIS_URL is not None
            env["REDIS_URL"] = REDIS_URL
    with ExitStack() as stack:
        yield _serve(stack, env), _serve(stack, env)


MODES: Final = [
    pytest.param(
        "sqlite",
        id="two processes on one SQLite file",
        # Run once, by the SQLite run of the suite.
        marks=pytest.mark.skipif(bool(DATABASE_URL), reason="the SQLite run covers it"),
    ),
    pytest.param("postgresql", id="two processes on PostgreSQL", marks=needs_postgres),
    pytest.param(
        "postgresql+redis",
        id="two processes on PostgreSQL with Redis",
        marks=[needs_postgres, needs_redis],
    ),
]


def _project(pair: Pair) -> int:
    response = pair.write.post("/projects", json={"name": "Rounds"}, headers=pair.headers)
    assert response.status_code == 201, response.text
    project_id: int = response.json()["id"]
    return project_id


def _task(pair: Pair, project_id: int) -> int:
    response = pair.write.post(
        f"/projects/{project_id}/tasks", json={"title": "round"}, headers=pair.headers
    )
    assert response.status_code == 201, response.text
    task_id: int = response.json()["id"]
    return task_id


def _warm(pair: Pair, path: str, headers: dict[str, str]) -> httpx.Response:
    # Twice: a task's first read tells the cache its project, the second stores it.
    pair.read.get(path, headers=headers)
    return pair.read.get(path, headers=headers)


def task_patches(pair: Pair) -> int:
    """A task patched through one process is read new through the other."""
    task_id = _task(pair, _project(pair))
    stale = 0
    for round_ in range(ROUNDS):
        assert _warm(pair, f"/tasks/{task_id}", pair.headers).status_code == 200
        title = f"title {round_}"
        patched = pair.write.patch(f"/tasks/{task_id}", json={"title": title}, headers=pair.headers)
        assert patched.status_code == 200, patched.text
        read = pair.read.get(f"/tasks/{task_id}", headers=pair.headers)
        assert read.status_code == 200, read.text
        stale += read.json()["title"] != title or read.headers["etag"] != patched.headers["etag"]
    return stale


def project_patches(pair: Pair) -> int:
    """A project patched through one process is read new through the other."""
    project_id = _project(pair)
    stale = 0
    for round_ in range(ROUNDS):
        # The project's summary is cached by its task routes: warm it, then change it.
        assert _warm(pair, f"/projects/{project_id}/tasks", pair.headers).status_code == 200
        name = f"name {round_}"
        path = f"/projects/{project_id}"
        patched = pair.write.patch(path, json={"name": name}, headers=pair.headers)
        assert patched.status_code == 200, patched.text
        read = pair.read.get(path, headers=pair.headers)
        assert read.status_code == 200, read.text
        stale += read.json()["name"] != name or read.headers["etag"] != patched.headers["etag"]
    return stale


def task_deletions(pair: Pair) -> int:
    """A task deleted through one process is gone from the other, and from its list."""
    project_id = _project(pair)
    stale = 0
    for _ in range(ROUNDS):
        task_id = _task(pair, project_id)
        assert _warm(pair, f"/tasks/{task_id}", pair.headers).status_code == 200
        listed = pair.read.get(f"/projects/{project_id}/tasks", headers=pair.headers)
        assert [task["id"] for task in listed.json()["items"]] == [task_id]
        deleted = pair.write.delete(f"/tasks/{task_id}", headers=pair.headers)
        assert deleted.status_code == 204, deleted.text
        stale += pair.read.get(f"/tasks/{task_id}", headers=pair.headers).status_code != 404
        listed = pair.read.get(f"/projects/{project_id}/tasks", headers=pair.headers)
        stale += listed.json()["items"] != []
    return stale


def memberships(pair: Pair) -> int:
    """A user added to a project through one process sees it through the other at once;
    removed, they get 404 there at once, however recently they were answered."""
    user_id, headers = pair.another_account()
    project_id = _project(pair)
    task_id = _task(pair, project_id)
    members = f"/projects/{project_id}/members"
    stale = 0
    for _ in range(ROUNDS):
        assert _warm(pair, f"/tasks/{task_id}", headers).status_code == 404
        body = {"user_id": user_id, "role": "viewer"}
        added = pair.write.post(members, json=body, headers=pair.headers)
        assert added.status_code == 201, added.text
        stale += pair.read.get(f"/tasks/{task_id}", headers=headers).status_code != 200
        assert _warm(pair, f"/projects/{project_id}/tasks", headers).status_code == 200
        removed = pair.write.delete(f"{members}/{user_id}", headers=pair.headers)
        assert removed.status_code == 204, removed.text
        stale += pair.read.get(f"/tasks/{task_id}", headers=headers).status_code != 404
        stale += pair.read.get(f"/projects/{project_id}/tasks", headers=headers).status_code != 404
    return stale


def logouts(pair: Pair) -> int:
    """A token logged out through one process is refused by the other."""
    stale = 0
    for _ in range(ROUNDS):
        headers = pair.login()
        assert _warm(pair, "/users/me", headers).status_code == 200
        logged_out = pair.write.post("/auth/logout", headers=headers)
        assert logged_out.status_code == 204, logged_out.text
        stale += pair.read.get("/users/me", headers=headers).status_code != 401
    return stale


@pytest.mark.parametrize("processes", MODES, indirect=True)
def test_no_read_through_one_process_is_older_than_a_write_answered_by_the_other(
    processes: tuple[str, str],
) -> None:
    """The five kinds of rounds run side by side, each with its own account and clients,
    writing through one process and reading through the other; every read is counted
    stale that shows the state before a write that had already answered."""
    writer, reader = processes
    kinds = {"task PATCH": task_patches, "project PATCH": project_patches}
    kinds |= {"task DELETE": task_deletions, "logout": logouts, "membership": memberships}
    pairs = {
        kind: Pair(writer, reader, f"{kind.replace(' ', '-').lower()}@read-after-write.example.com")
        for kind in kinds
    }
    try:
        with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
            futures = {kind: pool.submit(rounds, pairs[kind]) for kind, rounds in kinds.items()}
            stale = {kind: future.result() for kind, future in futures.items()}
    finally:
        for pair in pairs.values():
            pair.close()

    assert stale == dict.fromkeys(kinds, 0), f"stale answers in {ROUNDS} rounds each: {stale}"
