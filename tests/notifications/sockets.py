"""A WebSocket client for the tests: httpx-ws speaking to the ASGI app in-process."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
from fastapi import FastAPI
from httpx import AsyncClient
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

# Generous: a passing test never waits this long, a failing one fails instead of hanging.
TIMEOUT: Final = 5.0

Message = dict[str, Any]


@asynccontextmanager
async def ws_client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client whose WebSockets reach `app` in-process.

    Not a fixture: the transport runs the app in a task group, which must be left by the
    task that entered it.
    """
    async with AsyncClient(transport=ASGIWebSocketTransport(app), base_url="http://test") as http:
        yield http


@asynccontextmanager
async def open_socket(
    http: AsyncClient, token: str | None, *, since: int | str | None = None, ready: bool = True
) -> AsyncIterator[AsyncWebSocketSession]:
    """`GET /ws?token=…&since=…` through `http` (a client on an ASGIWebSocketTransport).

    With `ready`, a ping round trip first proves the server registered the connection
    (it reads frames only after that), so events caused next are sure to reach it.
    Replaying sockets pass `ready=False`: what they receive first is the replay.
    """
    params: dict[str, str] = {}
    if token is not None:
        params["token"] = token
    if since is not None:
        params["since"] = str(since)
    ws: AsyncWebSocketSession
    async with aconnect_ws("/ws", http, params=params) as ws:
        if ready:
            await ws.send_json({"type": "ping"})
            while (message := await receive(ws)) != {"type": "pong"}:
                assert message == {"type": "ping"}, message
                await ws.send_json({"type": "pong"})
        yield ws


async def receive(ws: AsyncWebSocketSession, within: float = TIMEOUT) -> Message:
    message: Message = await ws.receive_json(timeout=within)
    return message


async def receive_notifications(
    ws: AsyncWebSocketSession, count: int, within: float = TIMEOUT
) -> list[Message]:
    """The next `count` notifications, skipping heartbeat pings."""
    notifications: list[Message] = []
    with anyio.fail_after(within):
        while len(notifications) < count:
            message = await receive(ws)
            if message != {"type": "ping"}:
                notifications.append(message)
    return notifications


async def close_code(
    ws: AsyncWebSocketSession, within: float = TIMEOUT, *, pong: bool = True
) -> tuple[int, list[Message]]:
    """Read until the server closes; the close code and what came before it (heartbeat
    pings answered, unless `pong` is false, and left out)."""
    messages: list[Message] = []
    with anyio.fail_after(within):
        while True:
            try:
                message = await receive(ws)
            except WebSocketDisconnect as exc:
                return exc.code, messages
            if message != {"type": "ping"}:
                messages.append(message)
            elif pong:
                await ws.send_json({"type": "pong"})


async def wait_until(condition: Callable[[], bool], within: float = TIMEOUT) -> None:
    """Poll `condition` until it holds (for what the server does after a socket closed)."""
    with anyio.fail_after(within):
        # Polling: the server's bookkeeping offers no event to wait on.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def assert_nothing_pending(ws: AsyncWebSocketSession) -> None:
    """Nothing was queued for this socket: a ping sent now is the first thing answered.

    The server sends a connection's messages in order, so a notification pushed before the
    ping would arrive before the pong.
    """
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}
