"""The connection manager on its own: bookkeeping, fan-out and closing."""

from datetime import UTC, datetime
from typing import Any, cast

from starlette.websockets import WebSocket

from fasttrack.core.cache import Caches
from fasttrack.core.effects import Effects
from fasttrack.core.freshness import NoVersions
from fasttrack.notifications.broker import MemoryBroker
from fasttrack.notifications.hub import CloseCode, Connection, Hub


class Counts:
    def __init__(self) -> None:
        self.opened = self.closed = self.delivered = 0

    def connection_opened(self) -> None:
        self.opened += 1

    def connection_closed(self) -> None:
        self.closed += 1

    def notification_delivered(self) -> None:
        self.delivered += 1


def _connection(user_id: int, sid: str = "s") -> Connection:
    # The hub never touches the socket itself; the WebSocket route does.
    websocket = cast("WebSocket", object())
    return Connection(websocket=websocket, user_id=user_id, sid=sid, expires_at=datetime.now(UTC))


def _message(number: int) -> dict[str, Any]:
    return {"type": "comment_added", "id": number, "data": {}, "timestamp": "t"}


async def test_the_hub_keeps_every_connection_per_user_and_counts_once() -> None:
    counts = Counts()
    hub = Hub(MemoryBroker(), caches=Caches(NoVersions()), observer=counts)
    tab, other_tab, someone_else = _connection(1), _connection(1), _connection(2)
    for connection in (tab, other_tab, someone_else):
        hub.register(connection)

    assert hub.connections_of(1) == {tab, other_tab}
    assert hub.open_connections == 3
    hub.unregister(tab)
    hub.unregister(tab)
    hub.unregister(other_tab)
    assert hub.connections_of(1) == frozenset()
    assert (counts.opened, counts.closed, hub.open_connections) == (3, 2, 1)


async def test_a_revocation_closes_only_the_named_sessions() -> None:
    hub = Hub(MemoryBroker(), caches=Caches(NoVersions()))
    await hub.start()
    ended, kept, everything = _connection(1, "a"), _connection(1, "b"), _connection(2, "c")
    for connection in (ended, kept, everything):
        hub.register(connection)

    effects = Effects()
    effects.revoke(1, ["a"])
    effects.revoke(2, None)
    await hub.publish(effects)

    assert (ended.close_code, kept.close_code, everything.close_code) == (
        CloseCode.REVOKED,
        None,
        CloseCode.REVOKED,
    )
    await hub.stop()
    assert kept.close_code == CloseCode.GOING_AWAY


async def test_the_first_close_reason_wins() -> None:
    connection = _connection(1)
    connection.close(CloseCode.HEARTBEAT_TIMEOUT, "No pong received")
    connection.close(CloseCode.GOING_AWAY, "Server shutting down")

    assert (connection.close_code, connection.close_reason) == (4002, "No pong received")
    assert connection.closing.is_set()


async def test_without_an_observer_the_hub_still_delivers() -> None:
    hub = Hub(MemoryBroker(), caches=Caches(NoVersions()))
    await hub.start()
    connection = _connection(5)
    hub.register(connection)
    await hub._on_event(
        {"kind": "notifications", "messages": [{"user_id": 5, "message": _message(1)}]}
    )
    hub.delivered()
    hub.unregister(connection)

    assert connection.outbox.get_nowait() == _message(1)
    await hub.stop()
