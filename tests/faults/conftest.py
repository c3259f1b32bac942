"""Fixtures of the fault suite: real server processes and private PostgreSQL and Redis."""

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import DEFAULT_PASSWORD
from tests.faults.processes import PostgresCluster, RedisServer, Server, postgres_bin

ServerFactory = Callable[..., Server]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Makes (unstarted) servers; every one of them is stopped after the test."""
    servers: list[Server] = []

    def make(*, env: dict[str, str], migrate: bool = True) -> Server:
        workdir = tmp_path / f"server-{len(servers)}"
        workdir.mkdir()
        servers.append(Server(env=env, workdir=workdir, migrate=migrate))
        return servers[-1]

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A private, running PostgreSQL cluster that the test may stop and start."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed, or no postgres user"
        )
    cluster = PostgresCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, running redis-server that the test may kill and start again."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    redis = RedisServer(binary, workdir)
    try:
        redis.start()
        yield redis
    finally:
        redis.stop()


def register_and_login(base_url: str, email: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Create an account through the API; return the user and its authorization headers."""
    account = {"email": email, "password": DEFAULT_PASSWORD}
    registered = httpx.post(f"{base_url}/api/v1/auth/register", json=account, timeout=10)
    assert registered.status_code == 201, registered.text
    login = httpx.post(f"{base_url}/api/v1/auth/login", json=account, timeout=10)
    assert login.status_code == 200, login.text
    user: dict[str, Any] = registered.json()
    return user, {"Authorization": f"Bearer {login.json()['access_token']}"}


def add_member(
    base_url: str, headers: dict[str, str], project_id: int, user_id: int, role: str = "viewer"
) -> None:
    """Make the user a member of the project through the API (as its owner, by `headers`)."""
    added = httpx.post(
        f"{base_url}/api/v1/projects/{project_id}/members",
        json={"user_id": user_id, "role": role},
        headers=headers,
        timeout=10,
    )
    assert added.status_code == 201, added.text
