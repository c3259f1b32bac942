"""Real servers: WebSockets across two processes (PostgreSQL + Redis), and shutdown."""

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.factories import DEFAULT_PASSWORD
from tests.notifications.sockets import TIMEOUT
from tests.servers import free_port, server, server_log, server_process

DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("TEST_REDIS_URL")
FASTTRACK: Final = str(Path(sys.executable).parent / "fasttrack")
ENV: Final = {
    "SECRET_KEY": "a-secret-for-the-websocket-servers-test-48-chars!",
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_ENABLED": "false",
    "BCRYPT_ROUNDS": "4",
}
# Servers share the machine with the rest of the suite: allow for a slow answer.
HTTP_TIMEOUT: Final = 30.0


async def _account(base_url: str, email: str) -> tuple[int, str]:
    """Register `email` on the server; its user id and an access token."""
    credentials = {"email": email, "password": DEFAULT_PASSWORD}
    async with httpx.AsyncClient(base_url=f"{base_url}/api/v1", timeout=HTTP_TIMEOUT) as http:
        registered = await http.post("/auth/register", json=credentials)
        assert registered.status_code == 201, registered.text
        login = await http.post("/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    return registered.json()["id"], login.json()["access_token"]


def _ws_url(base_url: str, token: str) -> str:
    return f"{base_url.replace('http', 'ws', 1)}/ws?token={token}"


async def _ready(ws: ClientConnection) -> None:
    """A ping round trip: the server has registered the connection."""
    await ws.send('{"type": "ping"}')
    assert await ws.recv(decode=True) == '{"type":"pong"}'


async def _next(ws: ClientConnection) -> Any:
    return json.loads(await _recv(ws))


async def _recv(ws: ClientConnection) -> str:
    message = await asyncio.wait_for(ws.recv(decode=True), TIMEOUT)
    assert isinstance(message, str)
    return message


async def _close_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        await _recv(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_shutdown_closes_every_socket_with_1001(tmp_path: Path) -> None:
    port = free_port()
    env = {**ENV, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/shutdown.db"}
    argv = [FASTTRACK, "serve", "--port", str(port)]
    with server_process(argv, port=port, env=env) as (base_url, process):
        _, token = await _account(base_url, "shutdown@example.com")
        async with (
            connect(_ws_url(base_url, token)) as first,
            connect(_ws_url(base_url, token)) as second,
        ):
            await _ready(first)
            await _ready(second)
            os.killpg(process.pid, signal.SIGTERM)
            assert await _close_code(first) == 1001
            assert await _close_code(second) == 1001
        # Uvicorn ends by re-raising the signal once it has shut down.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)


async def test_a_frame_over_4_kib_closes_with_1009_behind_uvicorn(tmp_path: Path) -> None:
    port = free_port()
    env = {**ENV, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/frames.db"}
    with server([FASTTRACK, "serve", "--port", str(port)], port=port, env=env) as base_url:
        _, token = await _account(base_url, "frames@example.com")
        async with connect(_ws_url(base_url, token)) as ws:
            await _ready(ws)
            await ws.send('{"type": "ping", "pad": "' + "x" * 4096 + '"}')
            assert await _close_code(ws) == 1009


async def test_the_access_token_of_a_socket_never_reaches_the_log(tmp_path: Path) -> None:
    port = free_port()
    env = {**ENV, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/log.db", "LOG_LEVEL": "INFO"}
    with server_process([FASTTRACK, "serve", "--port", str(port)], port=port, env=env) as (
        base_url,
        process,
    ):
        _, token = await _account(base_url, "logged@example.com")
        async with connect(_ws_url(base_url, token) + "&since=0") as ws:
            await _ready(ws)
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)

    log = server_log(port)
    # Uvicorn logs each handshake with its path and query string.
    assert "/ws?token=[redacted]&since=0" in log
    assert token not in log


@pytest.mark.skipif(
    not DATABASE_URL.startswith("postgresql") or REDIS_URL is None,
    reason="set TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL to run",
)
async def test_events_and_revocations_cross_between_two_processes(app: FastAPI) -> None:
    assert REDIS_URL is not None
    env = {**ENV, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL}
    port_a = free_port()
    with server(
        [FASTTRACK, "serve", "--port", str(port_a), "--no-migrate"], port=port_a, env=env
    ) as a:
        port_b = free_port()
        argv_b = [FASTTRACK, "serve", "--port", str(port_b), "--no-migrate"]
        with server(argv_b, port=port_b, env=env) as b:
            owner_id, owner = await _account(a, "owner@example.com")
            assignee_id, assignee = await _account(a, "assignee@example.com")
            async with (
                httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http,
                connect(_ws_url(b, assignee)) as assignee_on_b,
                connect(_ws_url(a, owner)) as owner_on_a,
            ):
                await _ready(assignee_on_b)
                await _ready(owner_on_a)

                # Caused through A, delivered by B.
                as_owner = {"Authorization": f"Bearer {owner}"}
                as_assignee = {"Authorization": f"Bearer {assignee}"}
                project = (
                    await http.post(
                        f"{a}/api/v1/projects", json={"name": "Launch"}, headers=as_owner
                    )
                ).json()
                added = await http.post(
                    f"{a}/api/v1/projects/{project['id']}/members",
                    json={"user_id": assignee_id, "role": "viewer"},
                    headers=as_owner,
                )
                assert added.status_code == 201, added.text
                joined = await _next(assignee_on_b)
                assert (joined["type"], joined["data"]["project_id"]) == (
                    "member_added",
                    project["id"],
                )
                task = (
                    await http.post(
                        f"{a}/api/v1/projects/{project['id']}/tasks",
                        json={"title": "Venue", "assignee_id": assignee_id},
                        headers=as_owner,
                    )
                ).json()
                assigned = await _next(assignee_on_b)
                assert (assigned["type"], assigned["data"]["task_id"]) == (
                    "task_assigned",
                    task["id"],
                )
                assert assigned["data"]["assigned_by"]["id"] == owner_id

                # Caused through B, delivered by A.
                moved = await http.patch(
                    f"{b}/api/v1/tasks/{task['id']}",
                    json={"status": "in_progress"},
                    headers=as_assignee,
                )
                assert moved.status_code == 200
                changed = await _next(owner_on_a)
                assert (changed["type"], changed["data"]["new"]) == (
                    "status_changed",
                    "in_progress",
                )

                # Revoked through A, closed by B (the heartbeat is 30 s: this is the push).
                logout = await http.post(f"{a}/api/v1/auth/logout", headers=as_assignee)
                assert logout.status_code == 204
                assert await _close_code(assignee_on_b) == 4003
                await _ready(owner_on_a)
