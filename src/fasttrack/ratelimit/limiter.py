"""Sliding-window limits on the `limits` package: Redis when configured, in-process otherwise."""

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from fasttrack.ratelimit.storage import BoundedMemoryStorage

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

logger = logging.getLogger("fasttrack.ratelimit")

KEY_PREFIX: Final = "fasttrack:ratelimit"
# A rate limiter must never be the reason a request is slow: give up on Redis quickly.
REDIS_TIMEOUT_SECONDS: Final = 0.25
# While Redis is down, probe it again at most this often; in between, limit in-process.
REDIS_RETRY_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one hit: whether it may pass and what to tell the client."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int


def per_window(requests: int, window_seconds: int, *, name: str) -> RateLimitItem:
    """`requests` per sliding window of `window_seconds`; `name` keeps limits apart."""
    return RateLimitItemPerSecond(requests, window_seconds, namespace=name)


class RateLimiter:
    """Counts hits with `limits`' sliding-window-counter strategy.

    The counter strategy keeps two integers per client and limit (this window's hits and
    the last window's, weighted by how much of it still overlaps the sliding window), so
    a limit costs O(1) memory per client, and one Lua script in Redis.

    With `redis_url`, every process shares the counters in Redis. When Redis fails, the
    limiter logs it, limits in-process instead (per process, so the effective limit is
    looser but never off) and tries Redis again every `retry_seconds`.
    """

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        retry_seconds: float = REDIS_RETRY_SECONDS,
        shared: SlidingWindowCounterRateLimiter | None = None,
    ) -> None:
        self.memory = BoundedMemoryStorage()
        self._local = SlidingWindowCounterRateLimiter(self.memory)
        self._pool: ConnectionPool | None = None
        if shared is None and redis_url is not None:
            shared = self._redis_strategy(redis_url)
        self._shared = shared
        self._retry_seconds = retry_seconds
        self._shared_down_until: float | None = None

    def _redis_strategy(self, redis_url: str) -> SlidingWindowCounterRateLimiter:
        # Imported here: Redis is an optional extra, needed only when REDIS_URL is set.
        from redis.asyncio import ConnectionPool  # noqa: PLC0415

        # No retries and short timeouts: a failure falls back at once instead of stalling.
        self._pool = ConnectionPool.from_url(
            redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix=KEY_PREFIX,
            # Documented by limits, though its options are typed as scalars; owning the
            # pool lets `close()` release the connections.
            connection_pool=self._pool,  # type: ignore[arg-type]
        )
        return SlidingWindowCounterRateLimiter(storage)

    @property
    def using_fallback(self) -> bool:
        """True while Redis is configured but considered down."""
        return self._shared_down_until is not None

    async def hit(self, item: RateLimitItem, key: str) -> Decision:
        """Count one request of `key` against `item` and say whether it may pass."""
        shared = self._shared
        if shared is not None and (
            self._shared_down_until is None or time.monotonic() >= self._shared_down_until
        ):
            try:
                decision = await self._hit(shared, item, key)
            except StorageError as exc:
                self._shared_failed(exc)
            else:
                if self._shared_down_until is not None:
                    self._shared_down_until = None
                    logger.warning("rate-limit storage is reachable again; limits are shared")
                return decision
        return await self._hit(self._local, item, key)

    def _shared_failed(self, exc: StorageError) -> None:
        if self._shared_down_until is None:
            logger.error(
                "rate-limit storage unavailable (%s: %s); limiting in-process until it returns",
                exc.storage_error.__class__.__name__,
                exc.storage_error,
            )
        self._shared_down_until = time.monotonic() + self._retry_seconds

    @staticmethod
    async def _hit(
        strategy: SlidingWindowCounterRateLimiter, item: RateLimitItem, key: str
    ) -> Decision:
        allowed = await strategy.hit(item, key)
        reset_at, remaining = await strategy.get_window_stats(item, key)
        retry_after = 0 if allowed else max(1, math.ceil(reset_at - time.time()))
        return Decision(allowed, item.amount, remaining, retry_after)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
