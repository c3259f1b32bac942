"""Redis pub/sub broker: every process of a deployment receives every event."""

import asyncio
import contextlib
import json
import logging
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from fasttrack.notifications.broker import Event, EventHandler

logger = logging.getLogger("fasttrack.broker")

CHANNEL: Final = "fasttrack:events"
RECONNECT_DELAYS: Final = (0.1, 0.5, 1.0, 2.0, 5.0)
# A publish follows a committed change inside a request: a Redis that stops answering
# must cost it this long at most, then the event is delivered locally.
PUBLISH_TIMEOUT: Final = 2.0
# How long start-up waits for the subscription before serving without it.
SUBSCRIBE_TIMEOUT: Final = 2.0


class RedisBroker:
    """Redis pub/sub: every process of the deployment receives every event.

    If Redis is unreachable, events published here are delivered to this process's own
    connections (logged), and the subscriber reconnects with backoff until Redis returns;
    until it has, events published here still reach this process's own connections.
    The inbox in the database is the source of truth either way: a client that missed a
    push catches up by reconnecting with `?since=`.
    """

    def __init__(
        self, url: str, *, channel: str | None = None, publish_timeout: float = PUBLISH_TIMEOUT
    ) -> None:
        self._redis = Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=publish_timeout,
            # A connection pooled before Redis restarted fails on first use: retry once, at
            # once, on a fresh one, or the first event after every outage is lost to the
            # other processes. A lost reply may repeat a push, never the inbox row.
            retry=Retry(NoBackoff(), retries=1),
            retry_on_error=[RedisConnectionError],
        )
        # The subscriber waits for messages indefinitely: no read timeout on its socket.
        self._subscriber = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=None)
        # Pub/sub channels are server-wide, not per database: naming the database keeps
        # deployments that share a Redis server on different databases apart.
        database = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self._channel = channel or f"{CHANNEL}:{database}"
        self._handler: EventHandler | None = None
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        self._listener = asyncio.create_task(self._listen(), name="redis-broker")
        # Until the subscription stands, events published by this process would reach
        # none of its own sockets; if Redis is down, serve anyway (local delivery).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), SUBSCRIBE_TIMEOUT)

    async def publish(self, event: Event) -> None:
        try:
            await self._redis.publish(self._channel, json.dumps(event))
        except (RedisError, OSError) as exc:
            logger.warning("Redis publish failed (%s); delivering to local connections only", exc)
            await self._deliver_locally(event)
            return
        if not self.subscribed.is_set():
            # Redis took the event, but this process is not (yet, or again) subscribed:
            # the other processes get it, and so must this one's own connections.
            await self._deliver_locally(event)

    async def _deliver_locally(self, event: Event) -> None:
        if self._handler is not None:
            await self._handler(event)

    async def _listen(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._subscriber.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message["type"] == "message" and self._handler is not None:
                            await self._dispatch(message["data"])
                        elif message["type"] == "subscribe":
                            # Confirmed by Redis: from now on every publish reaches us.
                            if attempt:
                                logger.info("Redis subscription restored")
                            attempt = 0
                            self.subscribed.set()
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                logger.warning("Redis subscription lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _dispatch(self, raw: bytes | str) -> None:
        assert self._handler is not None
        try:
            event = json.loads(raw)
        except ValueError:
            logger.warning("ignored a malformed event on %s", self._channel)
            return
        try:
            await self._handler(event)
        except Exception:
            logger.exception("handling a broker event failed")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()
        await self._subscriber.aclose()
