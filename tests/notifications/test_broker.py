"""The brokers: in-process delivery, and Redis pub/sub with its fallback when Redis is away.

Tests marked `needs_redis` run with TEST_REDIS_URL set; the others fake an unreachable
or unresponsive Redis and always run.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
from redis.asyncio import Redis

from fasttrack.notifications import redis_broker
from fasttrack.notifications.broker import Event, MemoryBroker, create_broker
from fasttrack.notifications.redis_broker import RedisBroker
from tests.redis_proxy import RedisProxy

REDIS_URL = os.environ.get("TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="set TEST_REDIS_URL to run")
TIMEOUT: Final = 5.0


class Recorder:
    """A broker handler that keeps the events it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._arrived = asyncio.Event()

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    async def wait_for(self, count: int) -> list[Event]:
        with anyio.fail_after(TIMEOUT):
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.events


@asynccontextmanager
async def started(broker: RedisBroker, handler: Callable[[Event], object]) -> AsyncIterator[None]:
    await broker.start(handler)  # type: ignore[arg-type]
    try:
        yield
    finally:
        await broker.stop()


def _with_database(url: str, database: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_broker, "RECONNECT_DELAYS", (0.05,))
    monkeypatch.setattr(redis_broker, "SUBSCRIBE_TIMEOUT", 0.2)


def test_the_broker_is_in_process_unless_redis_is_configured() -> None:
    assert isinstance(create_broker(None), MemoryBroker)
    assert isinstance(create_broker(""), MemoryBroker)
    assert isinstance(create_broker("redis://127.0.0.1:1/0"), RedisBroker)


async def test_the_memory_broker_delivers_to_its_handler_until_stopped() -> None:
    broker, recorder = MemoryBroker(), Recorder()
    await broker.publish({"kind": "before start"})
    await broker.start(recorder)
    await broker.publish({"kind": "delivered"})
    await broker.stop()
    await broker.publish({"kind": "after stop"})

    assert recorder.events == [{"kind": "delivered"}]


# --- Without a Redis server --------------------------------------------------------------


@pytest.mark.usefixtures("fast_reconnect")
async def test_an_unreachable_redis_degrades_to_local_delivery_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack.broker")
    recorder = Recorder()
    broker = RedisBroker("redis://127.0.0.1:1/0")
    async with started(broker, recorder):
        await broker.publish({"kind": "notifications", "messages": []})
        assert await recorder.wait_for(1) == [{"kind": "notifications", "messages": []}]
        with anyio.fail_after(TIMEOUT):
            while "Redis subscription lost" not in caplog.text:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert not broker.subscribed.is_set()

    assert "Redis publish failed" in caplog.text
    assert "delivering to local connections only" in caplog.text


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers, like a hung Redis."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.usefixtures("fast_reconnect")
async def test_a_redis_that_stops_answering_does_not_hold_up_a_publish() -> None:
    recorder = Recorder()
    async with silent_server() as port:
        broker = RedisBroker(f"redis://127.0.0.1:{port}/0", publish_timeout=0.2)
        async with started(broker, recorder):
            with anyio.fail_after(2):
                await broker.publish({"kind": "revocation", "user_id": 1, "sids": None})
            assert recorder.events == [{"kind": "revocation", "user_id": 1, "sids": None}]


# --- With a Redis server -----------------------------------------------------------------


@needs_redis
async def test_an_event_published_by_one_process_reaches_every_process() -> None:
    assert REDIS_URL is not None
    here, there = Recorder(), Recorder()
    first, second = RedisBroker(REDIS_URL), RedisBroker(REDIS_URL)
    event: Event = {"kind": "revocation", "user_id": 7, "sids": ["a", "b"]}
    async with started(first, here), started(second, there):
        await first.publish(event)
        assert await here.wait_for(1) == [event]
        assert await there.wait_for(1) == [event]


@needs_redis
async def test_an_event_published_right_after_start_is_not_lost() -> None:
    assert REDIS_URL is not None
    recorder = Recorder()
    broker = RedisBroker(REDIS_URL)
    async with started(broker, recorder):
        await broker.publish({"kind": "first"})
        assert await recorder.wait_for(1) == [{"kind": "first"}]


@needs_redis
async def test_deployments_on_different_redis_databases_stay_apart() -> None:
    assert REDIS_URL is not None
    ours, theirs = Recorder(), Recorder()
    url = urlsplit(REDIS_URL)
    database = int(url.path.strip("/") or 0)
    first = RedisBroker(REDIS_URL)
    second = RedisBroker(_with_database(REDIS_URL, (database + 1) % 16))
    async with started(first, ours), started(second, theirs):
        await second.publish({"kind": "theirs"})
        await first.publish({"kind": "ours"})
        assert await ours.wait_for(1) == [{"kind": "ours"}]
        assert await theirs.wait_for(1) == [{"kind": "theirs"}]
        # Both are past the other's event: Redis delivers one connection's messages in order.
        await second.publish({"kind": "theirs again"})
        assert (await theirs.wait_for(2))[1] == {"kind": "theirs again"}
    assert ours.events == [{"kind": "ours"}]


@needs_redis
async def test_a_malformed_or_failing_event_does_not_stop_the_subscriber(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert REDIS_URL is not None
    events: list[Event] = []
    delivered = Recorder()

    async def fragile(event: Event) -> None:
        events.append(event)
        if event.get("kind") == "explosive":
            raise RuntimeError("handler failed")
        await delivered(event)

    broker = RedisBroker(REDIS_URL)
    async with started(broker, fragile):
        async with Redis.from_url(REDIS_URL) as raw:
            await raw.publish(broker._channel, b"{not json")
        await broker.publish({"kind": "explosive"})
        await broker.publish({"kind": "fine"})
        assert await delivered.wait_for(1) == [{"kind": "fine"}]

    assert events == [{"kind": "explosive"}, {"kind": "fine"}]
    assert "ignored a malformed event" in caplog.text
    assert "handling a broker event failed" in caplog.text


@needs_redis
@pytest.mark.usefixtures("fast_reconnect")
async def test_the_broker_recovers_when_redis_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    assert REDIS_URL is not None
    caplog.set_level(logging.INFO, logger="fasttrack.broker")
    proxy = RedisProxy(REDIS_URL)
    await proxy.start()
    local, remote = Recorder(), Recorder()
    broker, observer = RedisBroker(proxy.url), RedisBroker(REDIS_URL)
    try:
        async with started(broker, local), started(observer, remote):
            await proxy.cut()
            with anyio.fail_after(TIMEOUT):
                while broker.subscribed.is_set():  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await broker.publish({"kind": "during the outage"})
            assert local.events == [{"kind": "during the outage"}]

            await proxy.start()
            with anyio.fail_after(TIMEOUT):
                await broker.subscribed.wait()
            await broker.publish({"kind": "after the outage"})
            # Through Redis again: the other process hears it too.
            assert (await local.wait_for(2))[1] == {"kind": "after the outage"}
            assert await remote.wait_for(1) == [{"kind": "after the outage"}]
    finally:
        with contextlib.suppress(AssertionError):
            await proxy.cut()

    assert "Redis subscription lost" in caplog.text
    assert "Redis subscription restored" in caplog.text
