"""In-process rate-limit storage for `limits`' sliding-window-counter strategy, bounded in memory.

`limits.aio.storage.MemoryStorage` starts a sweep over *every* key after each hit. Measured
here, that costs ~15 µs a request with 10 keys, ~0.9 ms with 10 000 keys and ~18 ms with
100 000 keys, so a crowd of distinct clients would stall the event loop. This storage
evicts from the front of an insertion-ordered map instead: each call looks at the oldest
counters and drops those that have expired, which is O(1) amortised per request. Once
most counters are gone, the map is rebuilt, as a dict never shrinks its table on deletes.
"""

import time
from collections import OrderedDict
from collections.abc import Callable
from math import floor
from typing import Final

from limits.aio.storage import SlidingWindowCounterSupport, Storage
from limits.storage.base import TimestampedSlidingWindow

# Rebuild the map when it holds fewer than 1/COMPACT_RATIO of its peak, above this size.
COMPACT_RATIO: Final = 4
COMPACT_MIN_PEAK: Final = 1024


class _Counter:
    __slots__ = ("count", "expires_at")

    def __init__(self, expires_at: float) -> None:
        self.count = 0
        self.expires_at = expires_at


class BoundedMemoryStorage(Storage, SlidingWindowCounterSupport, TimestampedSlidingWindow):
    """Window counters in one `OrderedDict`, oldest first, evicted as they expire.

    The strategy creates one counter per client and window, always with the same lifetime
    (two windows) for a given limit, so insertion order is expiry order and eviction only
    ever looks at the front. With limits of different windows the order is approximate:
    a counter may outlive its expiry by at most the longest window before it is dropped.
    Every method runs without awaiting, so a read-modify-write cannot interleave with
    another request on the event loop and needs no lock.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        self._counters: OrderedDict[str, _Counter] = OrderedDict()
        self._peak = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def __len__(self) -> int:
        """The number of live window counters (two at most per client and limit)."""
        return len(self._counters)

    def _evict_expired(self, now: float) -> None:
        counters = self._counters
        while counters:
            oldest = next(iter(counters.values()))
            if oldest.expires_at > now:
                break
            counters.popitem(last=False)
        if self._peak > COMPACT_MIN_PEAK and len(counters) * COMPACT_RATIO < self._peak:
            self._counters = OrderedDict(counters)
            self._peak = len(counters)

    def _count(self, key: str, now: float) -> int:
        counter = self._counters.get(key)
        if counter is None or counter.expires_at <= now:
            return 0
        return counter.count

    def _add(self, key: str, expiry: float, amount: int, now: float) -> int:
        counter = self._counters.get(key)
        if counter is None or counter.expires_at <= now:
            self._counters.pop(key, None)
            counter = self._counters[key] = _Counter(now + expiry)
            self._peak = max(self._peak, len(self._counters))
        counter.count += amount
        return counter.count

    def _window(
        self, previous_key: str, current_key: str, expiry: int, now: float
    ) -> tuple[int, float, int, float]:
        previous = self._count(previous_key, now)
        # Same arithmetic as limits' own storages: how long the previous window still weighs.
        previous_ttl = (1 - (((now - expiry) / expiry) % 1)) * expiry if previous else 0.0
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous, previous_ttl, self._count(current_key, now), current_ttl

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        if amount > limit:
            return False
        now = self._clock()
        self._evict_expired(now)
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        previous, previous_ttl, current, _ = self._window(previous_key, current_key, expiry, now)
        if floor(previous * previous_ttl / expiry + current) + amount > limit:
            return False
        self._add(current_key, 2 * expiry, amount, now)
        return True

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        now = self._clock()
        return self._window(*self.sliding_window_keys(key, expiry, now), expiry, now)

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        for window_key in self.sliding_window_keys(key, expiry, self._clock()):
            self._counters.pop(window_key, None)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self._clock()
        self._evict_expired(now)
        return self._add(key, expiry, amount, now)

    async def get(self, key: str) -> int:
        return self._count(key, self._clock())

    async def get_expiry(self, key: str) -> float:
        counter = self._counters.get(key)
        return counter.expires_at if counter is not None else self._clock()

    async def clear(self, key: str) -> None:
        self._counters.pop(key, None)

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        cleared = len(self._counters)
        self._counters = OrderedDict()
        self._peak = 0
        return cleared
