"""How events travel between processes: in-process by default, Redis pub/sub if configured."""

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Event = dict[str, Any]
EventHandler = Callable[[Event], Awaitable[None]]


class Broker(Protocol):
    """Delivers every published event to the handler of every subscribed process."""

    async def start(self, handler: EventHandler) -> None: ...

    async def publish(self, event: Event) -> None: ...

    async def stop(self) -> None: ...


class MemoryBroker:
    """One process: publishing is delivering.

    Other processes of the deployment (`--workers N` without Redis) hear nothing of it.
    """

    def __init__(self) -> None:
        self._handler: EventHandler | None = None

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler

    async def publish(self, event: Event) -> None:
        if self._handler is not None:
            await self._handler(event)

    async def stop(self) -> None:
        self._handler = None


def create_broker(redis_url: str | None) -> Broker:
    if not redis_url:
        return MemoryBroker()
    # Imported here so deployments without Redis need not install the redis extra.
    from fasttrack.notifications.redis_broker import RedisBroker  # noqa: PLC0415

    return RedisBroker(redis_url)
