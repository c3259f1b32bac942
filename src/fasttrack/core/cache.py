"""Exact in-process caches: an entry is never served after a change that concerns it.

Every entry is tagged with the scopes it was read from (`user:7`, `project:3`). A change
commits, then invalidates its scopes in every process of the deployment: here at once,
elsewhere through the notification broker (core never imports a domain; the hub calls
`Caches.invalidate` for the events it receives). Three rules keep what is served exact:

* A read that raced an invalidation is not stored: `since()` is taken before the
  database is read and `put` drops the value when any invalidation came in between.
* While events may be missed (Redis unreachable with several processes, or several
  processes without Redis), the caches are bypassed, and emptied when events flow again:
  `continuity()` names the unbroken stretch of delivery, or is None.
* Changes no event announces are bounded by the entries' time to live (CACHE_TTL, 5 s):
  SQL by hand, a `fasttrack` command on a deployment without Redis, or a change made by
  a process that could not reach Redis while the others still could.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

KeyT = TypeVar("KeyT")
ValueT = TypeVar("ValueT")

DEFAULT_TTL_SECONDS: Final = 5.0
# What a shared read hands its waiters when it failed: each then reads for itself.
_UNSHARED: Final = object()
Continuity = Callable[[], int | None]


def user_scope(user_id: int) -> str:
    return f"user:{user_id}"


def project_scope(project_id: int) -> str:
    """The project's own fields, and whether it exists."""
    return f"project:{project_id}"


def project_tasks_scope(project_id: int) -> str:
    """The tasks of a project, and so its counts."""
    return f"project-tasks:{project_id}"


@dataclass(frozen=True, slots=True)
class _Entry(Generic[ValueT]):
    value: ValueT
    scopes: tuple[str, ...]
    expires_at: float


class ExactCache(Generic[KeyT, ValueT]):
    """A bounded, least-recently-used map whose entries die with their scopes."""

    def __init__(
        self,
        *,
        max_entries: int,
        continuity: Continuity,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._continuity = continuity
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[KeyT, _Entry[ValueT]] = OrderedDict()
        self._keys_by_scope: dict[str, set[KeyT]] = {}
        self._invalidations = 0
        self._stretch: int | None = None
        self._reads: dict[KeyT, asyncio.Future[object]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _usable(self) -> bool:
        stretch = self._continuity()
        if stretch != self._stretch:
            # Events may have been missed since the entries were read: forget them all.
            self.clear()
            self._stretch = stretch
        return stretch is not None

    def get(self, key: KeyT) -> ValueT | None:
        if not self._usable():
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    def since(self) -> int:
        """A mark to take before reading what will be `put`."""
        self._usable()
        return self._invalidations

    def put(self, key: KeyT, value: ValueT, *, scopes: Iterable[str], since: int) -> None:
        """Store `value`, read after `since()` returned `since`, unless that read may have
        missed a change (an invalidation came in meanwhile)."""
        # Usability first: a break in continuity since the read clears the cache, which
        # counts as an invalidation the read may have missed.
        if not self._usable() or since != self._invalidations:
            return
        self._drop(key)
        entry = _Entry(value, tuple(scopes), self._clock() + self._ttl)
        self._entries[key] = entry
        for scope in entry.scopes:
            self._keys_by_scope.setdefault(scope, set()).add(key)
        while len(self._entries) > self._max_entries:
            self._drop(next(iter(self._entries)))

    async def get_or_read(
        self,
        key: KeyT,
        read: Callable[[], Awaitable[ValueT | None]],
        *,
        scopes: Callable[[ValueT], Iterable[str]],
    ) -> ValueT | None:
        """The cached value, or what `read()` returns (None: nothing there), stored.

        Callers that miss the same key while it is being read share that one read: an
        entry that expires under load is refilled by one query, not by one per request
        in flight. A caller that comes after an invalidation does not join a read that
        began before it (see `invalidate`).
        """
        value = self.get(key)
        if value is not None:
            return value
        pending = self._reads.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not _UNSHARED:
                return shared  # type: ignore[return-value]
            return await read()
        since = self.since()
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._reads[key] = future
        try:
            value = await read()
        except BaseException:
            future.set_result(_UNSHARED)
            raise
        finally:
            if self._reads.get(key) is future:
                del self._reads[key]
        if value is not None:
            self.put(key, value, scopes=scopes(value), since=since)
        future.set_result(value)
        return value

    def invalidate(self, scopes: Iterable[str]) -> None:
        # Reads already under way may predate the change: nobody joins them any more.
        self._reads.clear()
        self._invalidations += 1
        for scope in scopes:
            for key in self._keys_by_scope.pop(scope, ()):
                self._drop(key)

    def clear(self) -> None:
        self._reads.clear()
        self._invalidations += 1
        self._entries.clear()
        self._keys_by_scope.clear()

    def _drop(self, key: KeyT) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for scope in entry.scopes:
            keys = self._keys_by_scope.get(scope)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_scope[scope]


class Caches:
    """Every exact cache of the process, invalidated together."""

    def __init__(self, continuity: Continuity, *, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self._continuity = continuity
        self._ttl = ttl
        self._caches: list[ExactCache[object, object]] = []

    def new(self, *, max_entries: int) -> "ExactCache[KeyT, ValueT]":
        cache: ExactCache[KeyT, ValueT] = ExactCache(
            max_entries=max_entries, continuity=self._continuity, ttl=self._ttl
        )
        self._caches.append(cache)  # type: ignore[arg-type]
        return cache

    def invalidate(self, scopes: Iterable[str]) -> None:
        names = tuple(scopes)
        for cache in self._caches:
            cache.invalidate(names)

    def clear(self) -> None:
        for cache in self._caches:
            cache.clear()
