"""The limiter behind the middleware: bounded memory, Redis sharing, falling back and back."""

import asyncio
import logging
import os
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from fasttrack.core.config import Settings
from fasttrack.ratelimit.limiter import RateLimiter, per_window
from fasttrack.ratelimit.storage import BoundedMemoryStorage
from tests.apps import client_for, forget_shared_rate_limits, running_app
from tests.redis_proxy import RedisProxy

REDIS_URL = os.environ.get("TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="set TEST_REDIS_URL to run")


@pytest.fixture
def limiter_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    # The app's logging setup stops propagation, so listen on the limiter's logger itself.
    logger = logging.getLogger("fasttrack.ratelimit")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="fasttrack.ratelimit")
    yield caplog
    logger.removeHandler(caplog.handler)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_stays_bounded_after_100k_clients() -> None:
    # The strategy and storage the limiter uses in-process, with a one-second window on a
    # clock the test moves, so a slow machine cannot let counters expire mid-way.
    clock = FakeClock()
    storage = BoundedMemoryStorage(clock)
    strategy = SlidingWindowCounterRateLimiter(storage)
    item = per_window(5, 1, name="bounded")
    for number in range(100_000):
        await strategy.hit(item, f"ip:10.{number >> 16}.{(number >> 8) & 255}.{number & 255}")
    assert len(storage) == 100_000
    # tracemalloc slows every allocation down, so it watches only a further 20 000 clients.
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for number in range(20_000):
            await strategy.hit(item, f"ip:172.16.{number >> 8}.{number & 255}")
        assert len(storage) == 120_000
        grown = tracemalloc.get_traced_memory()[0] - baseline

        clock.now += 1.5  # the counters of the last window still count
        await strategy.hit(item, "ip:192.0.2.1")
        assert len(storage) == 120_001

        clock.now += 0.6  # two windows after the first hits: every counter has expired
        await strategy.hit(item, "ip:192.0.2.2")
        left = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert len(storage) == 2  # the two clients seen in the last two windows
    assert grown > 2_000_000
    assert left < grown / 20, (grown, left)


async def test_memory_storage_forgets_a_key_after_its_windows() -> None:
    storage = BoundedMemoryStorage()
    assert await storage.incr("k", 1) == 1
    assert await storage.incr("k", 1) == 2
    assert await storage.get("k") == 2
    assert await storage.get_expiry("k") > 0
    await asyncio.sleep(1.05)
    assert await storage.get("k") == 0
    assert await storage.incr("k", 1) == 1
    await storage.clear("k")
    assert await storage.get("k") == 0
    assert await storage.check()
    await storage.incr("a", 60)
    assert await storage.reset() == 1
    assert len(storage) == 0


async def test_clearing_a_sliding_window_frees_the_key() -> None:
    storage = BoundedMemoryStorage()
    strategy = SlidingWindowCounterRateLimiter(storage)
    item = per_window(1, 60, name="clear")
    assert await strategy.hit(item, "k")
    assert not await strategy.hit(item, "k")
    await strategy.clear(item, "k")
    assert await strategy.hit(item, "k")
    assert not await strategy.hit(item, "k", cost=2)


class FlakyStorage(BoundedMemoryStorage):
    """Memory storage that fails like a lost Redis while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.wrap_exceptions = True
        self.down = False
        self.calls = 0

    @property
    def base_exceptions(self) -> type[Exception]:
        return ConnectionError

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        self.calls += 1
        if self.down:
            raise ConnectionError("Connection refused")
        return await super().acquire_sliding_window_entry(key, limit, expiry, amount)


async def test_a_failing_shared_storage_falls_back_and_recovers(
    limiter_log: pytest.LogCaptureFixture,
) -> None:
    shared = FlakyStorage()
    limiter = RateLimiter(shared=SlidingWindowCounterRateLimiter(shared), retry_seconds=0.2)
    item = per_window(2, 60, name="flaky")

    assert (await limiter.hit(item, "k")).allowed
    assert (await limiter.hit(item, "k")).allowed
    assert len(limiter.memory) == 0

    shared.down = True
    in_process = [(await limiter.hit(item, "k")).allowed for _ in range(3)]
    assert in_process == [True, True, False]  # limited in-process, never unlimited
    during_outage = limiter.using_fallback
    assert shared.calls == 3  # Redis is not asked again until the retry interval passed
    assert "limiting in-process" in limiter_log.text

    shared.down = False
    await asyncio.sleep(0.25)
    back = await limiter.hit(item, "k")
    assert not back.allowed  # the shared counters survived the outage
    assert (during_outage, limiter.using_fallback) == (True, False)
    assert "reachable again" in limiter_log.text


async def test_an_unreachable_redis_does_not_stop_the_service(
    settings: Settings, limiter_log: pytest.LogCaptureFixture
) -> None:
    async with (
        running_app(
            settings,
            rate_limit_enabled=True,
            rate_limit_requests=2,
            redis_url="redis://127.0.0.1:1/0",
        ) as app,
        client_for(app) as client,
    ):
        statuses = [(await client.get("/api/v1/users/me")).status_code for _ in range(3)]
        health = await client.get("/health")
    assert statuses == [401, 401, 429]
    assert health.status_code == 200
    assert app.state.rate_limiter.using_fallback
    assert "rate-limit storage unavailable" in limiter_log.text


def _unique_address() -> str:
    number = uuid.uuid4().int
    return f"10.{number % 250}.{(number >> 8) % 250}.{(number >> 16) % 250}"


@needs_redis
async def test_two_apps_on_one_redis_share_the_limit(settings: Settings) -> None:
    address = _unique_address()
    async with (
        running_app(settings, rate_limit_enabled=True, rate_limit_requests=3) as first,
        running_app(settings, rate_limit_enabled=True, rate_limit_requests=3) as second,
        client_for(first, client_ip=address) as first_client,
        client_for(second, client_ip=address) as second_client,
    ):
        statuses = []
        for _ in range(3):
            statuses.append((await first_client.get("/api/v1/users/me")).status_code)
            statuses.append((await second_client.get("/api/v1/users/me")).status_code)
    assert statuses.count(401) == 3
    assert statuses.count(429) == 3
    assert not first.state.rate_limiter.using_fallback


@pytest.fixture
async def redis_proxy() -> AsyncIterator[RedisProxy]:
    assert REDIS_URL is not None
    proxy = RedisProxy(REDIS_URL)
    await proxy.start()
    yield proxy
    await proxy.cut()


@needs_redis
async def test_redis_outage_falls_back_and_shares_again_when_it_returns(
    redis_proxy: RedisProxy, limiter_log: pytest.LogCaptureFixture
) -> None:
    assert REDIS_URL is not None
    await forget_shared_rate_limits(REDIS_URL)
    via_proxy = redis_proxy.url
    first = RateLimiter(redis_url=via_proxy, retry_seconds=0.2)
    second = RateLimiter(redis_url=via_proxy, retry_seconds=0.2)
    item = per_window(2, 60, name="outage")
    key = f"ip:{_unique_address()}"
    try:
        assert (await first.hit(item, key)).allowed

        await redis_proxy.cut()
        assert (await first.hit(item, key)).allowed  # answered from process memory
        during_outage = first.using_fallback
        assert "limiting in-process" in limiter_log.text

        await redis_proxy.start()
        await asyncio.sleep(0.25)
        assert (await second.hit(item, key)).allowed  # the 2nd hit Redis has seen
        assert not (await first.hit(item, key)).allowed
        assert (during_outage, first.using_fallback) == (True, False)
        assert "reachable again" in limiter_log.text
    finally:
        await first.close()
        await second.close()
