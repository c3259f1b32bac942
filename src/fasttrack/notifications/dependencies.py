"""Dependencies of the notifications domain."""

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from fasttrack.core.db import UnitOfWork, UnitOfWorkDep
from fasttrack.notifications.hub import Hub
from fasttrack.notifications.models import StoredNotification


class Broadcast:
    """What a committed change tells the deployment: pushes, revocations, stale caches.

    The request's unit of work ends first: the change is committed by then, and on
    SQLite the next writer does not wait while the broker (Redis) is asked.
    """

    def __init__(self, hub: Hub, work: UnitOfWork) -> None:
        self._hub = hub
        self._work = work

    async def notifications(self, notifications: Iterable[StoredNotification]) -> None:
        await self._work.close()
        await self._hub.publish(notifications)

    async def revocation(self, user_id: int, sids: Iterable[str] | None) -> None:
        """The user's sessions `sids` (all for None) ended: sockets close, caches forget."""
        await self._work.close()
        await self._hub.revoke(user_id, sids)

    async def invalidation(self, scopes: Iterable[str]) -> None:
        await self._work.close()
        await self._hub.invalidate(scopes)


async def get_broadcast(connection: HTTPConnection, work: UnitOfWorkDep) -> Broadcast:
    return Broadcast(connection.app.state.hub, work)


BroadcastDep = Annotated[Broadcast, Depends(get_broadcast)]
