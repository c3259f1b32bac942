"""GET /ws: live notifications over a WebSocket, with replay, heartbeat and revocation."""

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from fasttrack.auth import service as auth_service
from fasttrack.auth.models import MAX_TOKEN_LENGTH
from fasttrack.auth.service import Principal, PrincipalCache
from fasttrack.auth.tokens import Claims, TokenService
from fasttrack.core.config import Settings
from fasttrack.core.db import MAX_ID, Database, utcnow
from fasttrack.core.errors import Unauthorized, is_database_unavailable
from fasttrack.notifications import service as notification_service
from fasttrack.notifications.hub import CloseCode, Connection, Hub
from fasttrack.notifications.service import notification_message

logger = logging.getLogger("fasttrack.ws")

router = APIRouter()

MAX_FRAME_BYTES: Final = 4096
DATABASE_UNAVAILABLE: Final = "The database is unavailable; reconnect later"
PING: Final = {"type": "ping"}
PONG: Final = {"type": "pong"}


def _error(detail: str) -> dict[str, Any]:
    return {"type": "error", "data": {"code": "invalid_message", "detail": detail}}


class Session:
    """The life of one connection: replay, then live messages, heartbeat and revocation."""

    def __init__(
        self,
        connection: Connection,
        *,
        claims: Claims,
        hub: Hub,
        database: Database,
        settings: Settings,
    ) -> None:
        self.connection = connection
        self.claims = claims
        self.hub = hub
        self.database = database
        self.interval = settings.ws_heartbeat_interval
        self.timeout = settings.ws_heartbeat_timeout
        self.pong = asyncio.Event()
        # Ids, not the highest one: a notification may commit after the replay read a
        # newer one (ids are taken at insert, rows become visible at commit).
        self.replayed: set[int] = set()

    async def run(self, *, since: int | None) -> None:
        websocket = self.connection.websocket
        # Registered before reading the inbox: whatever is committed after the read is
        # queued meanwhile, and the writer skips what the replay already sent.
        self.hub.register(self.connection)
        tasks: list[asyncio.Task[Any]] = []
        try:
            if since is not None:
                await self._replay(since)
            tasks = [
                asyncio.create_task(self._read()),
                asyncio.create_task(self._write()),
                asyncio.create_task(self._heartbeat()),
                asyncio.create_task(self.connection.closing.wait()),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except WebSocketDisconnect:
            pass
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            logger.warning("replaying the inbox failed: %s", exc)
            self.connection.close(CloseCode.TRY_AGAIN_LATER, DATABASE_UNAVAILABLE)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.hub.unregister(self.connection)
            if (
                self.connection.close_code is not None
                and websocket.application_state is WebSocketState.CONNECTED
            ):
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await websocket.close(self.connection.close_code, self.connection.close_reason)

    async def _replay(self, since: int) -> None:
        after = since
        while True:
            async with self.database.session(write=False) as session:
                batch = await notification_service.missed_since(
                    session, self.connection.user_id, after
                )
            for notification in batch:
                await self.connection.websocket.send_json(notification_message(notification))
                self.hub.delivered()
                self.replayed.add(notification.id)
                after = notification.id
            if len(batch) < notification_service.REPLAY_BATCH:
                break

    async def _write(self) -> None:
        websocket = self.connection.websocket
        while True:
            message = await self.connection.outbox.get()
            message_id = message.get("id")
            if message_id in self.replayed:
                continue
            try:
                await websocket.send_json(message)
            except (WebSocketDisconnect, RuntimeError):
                return
            if message_id is not None:
                self.hub.delivered()

    async def _read(self) -> None:
        websocket = self.connection.websocket
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw: str | bytes | None = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            size = len(raw.encode()) if isinstance(raw, str) else len(raw)
            if size > MAX_FRAME_BYTES:
                self.connection.close(CloseCode.TOO_BIG, "Frames are limited to 4 KiB")
                return
            self._handle(raw)

    def _handle(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self.connection.push(_error("Send JSON text frames, not binary"))
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            self.connection.push(_error("The frame is not valid JSON"))
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            self.connection.push(PONG)
        elif kind == "pong":
            self.pong.set()
        else:
            self.connection.push(_error('Expected {"type": "ping"} or {"type": "pong"}'))

    async def _heartbeat(self) -> None:
        while True:
            until_expiry = (self.claims.expires_at - utcnow()).total_seconds()
            await asyncio.sleep(max(0.0, min(self.interval, until_expiry)))
            if utcnow() >= self.claims.expires_at:
                self.connection.close(CloseCode.INVALID_TOKEN, "Token expired")
                return
            # Revocation is also pushed at once; this check catches one missed by a broker.
            if not await self._still_authorised():
                self.connection.close(CloseCode.REVOKED, "Session revoked")
                return
            self.pong.clear()
            self.connection.push(PING)
            try:
                await asyncio.wait_for(self.pong.wait(), self.timeout)
            except TimeoutError:
                self.connection.close(CloseCode.HEARTBEAT_TIMEOUT, "No pong received")
                return

    async def _still_authorised(self) -> bool:
        # From the database, not the cache: this check backs up revocations a broker lost.
        try:
            async with self.database.session(write=False) as session:
                await auth_service.load_principal(session, self.claims)
        except Unauthorized:
            return False
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            # Nothing can be revoked while the database is down, and revocations are also
            # pushed: the socket stays, and the next heartbeat checks again.
            logger.warning("the heartbeat could not check the session: %s", exc)
        return True


async def authenticate(
    token: str | None, *, tokens: TokenService, database: Database, cache: PrincipalCache
) -> Principal | None:
    """The same checks as HTTP bearer authentication; None when any of them fails."""
    # Checked here, not by Query(max_length=...): a failed parameter check would close the
    # handshake with 1008, echoing the token in the reason, where SPEC §7 wants every bad
    # token accepted and closed with 4001.
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        async with database.unit_of_work(write=False) as work:
            return await auth_service.principal_for(token, tokens=tokens, work=work, cache=cache)
    except Unauthorized:
        return None


@router.websocket("/ws")
async def notifications_socket(
    websocket: WebSocket,
    token: Annotated[str | None, Query()] = None,
    since: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
) -> None:
    """Live notifications. Authenticate with `?token=<access token>`; pass
    `?since=<last id seen>` to first receive, in order, what was stored meanwhile."""
    state = websocket.app.state
    await websocket.accept()
    try:
        principal = await authenticate(
            token, tokens=state.tokens, database=state.database, cache=state.principals
        )
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        logger.warning("authenticating a socket failed: %s", exc)
        await websocket.close(CloseCode.TRY_AGAIN_LATER, DATABASE_UNAVAILABLE)
        return
    if principal is None:
        await websocket.close(CloseCode.INVALID_TOKEN, "Invalid, expired or revoked token")
        return
    connection = Connection(
        websocket=websocket,
        user_id=principal.user.id,
        sid=principal.claims.sid,
        expires_at=principal.claims.expires_at,
    )
    session = Session(
        connection,
        claims=principal.claims,
        hub=state.hub,
        database=state.database,
        settings=state.settings,
    )
    await session.run(since=since)
