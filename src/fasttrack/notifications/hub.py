"""The connection manager: every open WebSocket per user, and fan-out through the broker."""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from starlette.websockets import WebSocket

from fasttrack.core.cache import Caches
from fasttrack.core.effects import Effects, Event
from fasttrack.notifications.broker import Broker

logger = logging.getLogger("fasttrack.hub")

OUTBOX_SIZE: Final = 1000


class CloseCode:
    """WebSocket close codes of SPEC §7."""

    GOING_AWAY: Final = 1001
    TOO_BIG: Final = 1009
    TRY_AGAIN_LATER: Final = 1013
    INVALID_TOKEN: Final = 4001
    HEARTBEAT_TIMEOUT: Final = 4002
    REVOKED: Final = 4003


class HubObserver(Protocol):
    """Receives the hub's counts (the metrics endpoint implements it)."""

    def connection_opened(self) -> None: ...

    def connection_closed(self) -> None: ...

    def notification_delivered(self) -> None: ...


class NullObserver:
    def connection_opened(self) -> None:
        return None

    def connection_closed(self) -> None:
        return None

    def notification_delivered(self) -> None:
        return None


@dataclass(eq=False)
class Connection:
    """One open socket of one user, with its outgoing queue and the reason it ends."""

    websocket: WebSocket
    user_id: int
    sid: str
    expires_at: datetime
    outbox: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=OUTBOX_SIZE)
    )
    close_code: int | None = None
    close_reason: str = ""
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, message: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            # A client this far behind reconnects with ?since= and catches up from the inbox.
            self.close(CloseCode.TRY_AGAIN_LATER, "Too many undelivered messages")

    def close(self, code: int, reason: str = "") -> None:
        """Ask the connection to close with `code`; the first reason given wins."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.closing.set()


class Hub:
    """Holds every open connection of this process and delivers events to them, and
    publishes the effects of every change (core.effects).

    Notifications and revocations are published through the broker, so with Redis a
    user connected to any process receives them; each process delivers to its own
    sockets. What a change makes stale in the caches is told through their validator
    (core.freshness), before the change's request answers.
    """

    def __init__(
        self, broker: Broker, *, caches: Caches, observer: HubObserver | None = None
    ) -> None:
        self._broker = broker
        self._caches = caches
        self._observer = observer or NullObserver()
        self._connections: defaultdict[int, set[Connection]] = defaultdict(set)
        self._none_open = asyncio.Event()
        self._none_open.set()

    async def start(self) -> None:
        await self._broker.start(self._on_event)

    async def stop(self) -> None:
        self.close_all(CloseCode.GOING_AWAY, "Server shutting down")
        await self._broker.stop()
        await self._caches.close()

    @property
    def open_connections(self) -> int:
        return sum(len(connections) for connections in self._connections.values())

    def connections_of(self, user_id: int) -> frozenset[Connection]:
        return frozenset(self._connections.get(user_id, ()))

    def register(self, connection: Connection) -> None:
        self._connections[connection.user_id].add(connection)
        self._none_open.clear()
        self._observer.connection_opened()

    def unregister(self, connection: Connection) -> None:
        connections = self._connections.get(connection.user_id)
        if connections is None or connection not in connections:
            return
        connections.discard(connection)
        if not connections:
            del self._connections[connection.user_id]
            if not self._connections:
                self._none_open.set()
        self._observer.connection_closed()

    def delivered(self) -> None:
        self._observer.notification_delivered()

    def close_all(self, code: int, reason: str) -> None:
        for connections in list(self._connections.values()):
            for connection in list(connections):
                connection.close(code, reason)

    async def all_closed(self) -> None:
        """Wait until no socket of this process is open."""
        await self._none_open.wait()

    async def prepare(self, scopes: Collection[str]) -> None:
        """Before a change to `scopes` commits: no process caches them until it is done."""
        await self._caches.prepare(scopes)

    async def publish(self, effects: Effects) -> None:
        """After a commit: what it changed is stale in every process's caches, and its
        events reach every process (sockets to push to or close)."""
        try:
            await self._caches.changed(effects.scopes)
        except Exception:
            logger.exception("moving the versions of %d cache scopes failed", len(effects.scopes))
        for event in effects.events:
            await self._publish(event)

    async def _publish(self, event: Event) -> None:
        try:
            await self._broker.publish(event)
        except Exception:
            # The change is committed and the inbox holds it; a push must never fail it.
            logger.exception("publishing a %s event failed", event.get("kind"))

    async def _on_event(self, event: Event) -> None:
        kind = event.get("kind")
        if kind == "notifications":
            for item in event["messages"]:
                for connection in self.connections_of(item["user_id"]):
                    connection.push(item["message"])
        elif kind == "revocation":
            sids = event["sids"]
            for connection in self.connections_of(event["user_id"]):
                if sids is None or connection.sid in sids:
                    connection.close(CloseCode.REVOKED, "Session revoked")
        else:
            logger.warning("ignored an event of unknown kind %r", kind)
