"""How events travel between processes: in-process by default, Redis pub/sub if configured."""

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Event = dict[str, Any]
EventHandler = Callable[[Event], Awaitable[None]]


class Broker(Protocol):
    """Delivers every published event to the handler of every subscribed process."""

    def continuity(self) -> int | None:
        """Names the current unbroken stretch in which every event any process publishes
        reaches this one; None while some may be missed (see core.cache)."""

    async def start(self, handler: EventHandler) -> None: ...

    async def publish(self, event: Event) -> None: ...

    async def stop(self) -> None: ...


class MemoryBroker:
    """One process: publishing is delivering.

    Other processes of the deployment (`--workers N` without Redis) hear nothing of it.
    """

    def __init__(self, *, processes: int = 1) -> None:
        self._handler: EventHandler | None = None
        self._alone = processes == 1

    def continuity(self) -> int | None:
        return 0 if self._alone else None

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler

    async def publish(self, event: Event) -> None:
        if self._handler is not None:
            await self._handler(event)

    async def stop(self) -> None:
        self._handler = None


def create_broker(redis_url: str | None, *, processes: int = 1) -> Broker:
    if not redis_url:
        return MemoryBroker(processes=processes)
    # Imported here so deployments without Redis need not install the redis extra.
    from fasttrack.notifications.redis_broker import RedisBroker  # noqa: PLC0415

    return RedisBroker(redis_url)
