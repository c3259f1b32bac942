"""Validated in-process caches: an entry is served only while it provably matches the
database.

Every entry is tagged with the scopes it was read from (`user:7`, `project:3`) and the
stamp of those scopes taken before the read (core.freshness). Each change moves its
scopes' versions before its request answers, in every process of the deployment, so an
entry read before a change never matches a stamp taken after it: once a write has
answered, no request anywhere is served what it changed. Where no stamp can be had (no
validator, Redis unreachable, another process on the SQLite file) the caches are
bypassed. The time to live (CACHE_TTL) only bounds memory and what no change announces:
SQL typed by hand.

A caller whose entry is missing reads the database itself, or joins a read of the same
key already under way, if that read was stamped like its own and it holds no turn of the
database's gates (the reader may be waiting for one): joining is never a wait on a wait,
and it is bounded.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from fasttrack.core.freshness import Freshness, Stamp

KeyT = TypeVar("KeyT")
ValueT = TypeVar("ValueT")

DEFAULT_TTL_SECONDS: Final = 5.0
# The longest a caller waits for another's read of the same entry before reading itself.
SHARED_READ_WAIT_SECONDS: Final = 1.0
# What a shared read hands its waiters when it failed: each then reads for itself.
_UNSHARED: Final = object()


def user_scope(user_id: int) -> str:
    return f"user:{user_id}"


def project_scope(project_id: int) -> str:
    """The project's own fields, and whether it exists."""
    return f"project:{project_id}"


def project_members_scope(project_id: int) -> str:
    """Who is a member of a project, and in which role."""
    return f"project-members:{project_id}"


def project_tasks_scope(project_id: int) -> str:
    """The tasks of a project, and so its counts."""
    return f"project-tasks:{project_id}"


@dataclass(frozen=True, slots=True)
class _Entry(Generic[ValueT]):
    value: ValueT
    scopes: tuple[str, ...]
    stamp: Stamp
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Read:
    stamp: Stamp
    result: "asyncio.Future[object]"


class ValidatedCache(Generic[KeyT, ValueT]):
    """A bounded, least-recently-used map whose entries are checked on every read."""

    def __init__(
        self,
        *,
        max_entries: int,
        freshness: Freshness,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._freshness = freshness
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[KeyT, _Entry[ValueT]] = OrderedDict()
        # The scopes a key was read from, kept after its entry is gone: a key's scopes
        # never change (a task stays in its project), and a stamp needs them before the
        # read.
        self._scopes: OrderedDict[KeyT, tuple[str, ...]] = OrderedDict()
        self._keys_by_scope: dict[str, set[KeyT]] = {}
        self._reads: dict[KeyT, _Read] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether an entry is held for `key` (served only if its stamp still holds)."""
        return key in self._entries

    async def get_or_read(
        self,
        key: KeyT,
        read: Callable[[], Awaitable[ValueT | None]],
        *,
        scopes: Sequence[str] | Callable[[ValueT], Iterable[str]],
        may_wait: bool = True,
    ) -> ValueT | None:
        """The cached value if its stamp still holds, or what `read()` returns (None:
        nothing there), stored under the stamp taken before it.

        `scopes` names what the value is read from: known from the key, or found in the
        value (then the first read of a key only learns them, and the next one is
        stored). `may_wait` is False for a caller that holds a turn of a database gate.
        """
        known = tuple(scopes) if not callable(scopes) else self._scopes.get(key)
        stamp = None
        if known is not None and self._ttl > 0:
            stamp = await self._freshness.stamp(known)
        if stamp is None:
            value = await read()
            if known is None and value is not None and callable(scopes):
                # A first read: it tells the scopes to stamp before the next one.
                self._remember(key, tuple(scopes(value)))
            return value
        entry = self._entries.get(key)
        if entry is not None:
            if entry.stamp == stamp and self._clock() < entry.expires_at:
                self._entries.move_to_end(key)
                return entry.value
            self._drop(key)
        pending = self._reads.get(key)
        if pending is not None and may_wait and pending.stamp == stamp:
            return await self._join(pending, read)
        assert known is not None
        return await self._read_and_store(key, read, stamp, known)

    @staticmethod
    async def _join(pending: _Read, read: Callable[[], Awaitable[ValueT | None]]) -> ValueT | None:
        try:
            shared = await asyncio.wait_for(
                asyncio.shield(pending.result), SHARED_READ_WAIT_SECONDS
            )
        except TimeoutError:
            shared = _UNSHARED
        if shared is _UNSHARED:
            return await read()
        return shared  # type: ignore[return-value]

    async def _read_and_store(
        self,
        key: KeyT,
        read: Callable[[], Awaitable[ValueT | None]],
        stamp: Stamp,
        known: tuple[str, ...],
    ) -> ValueT | None:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        shared = self._reads[key] = _Read(stamp, future)
        try:
            value = await read()
        except BaseException:
            future.set_result(_UNSHARED)
            raise
        finally:
            if self._reads.get(key) is shared:
                del self._reads[key]
        future.set_result(value)
        if value is not None:
            self._store(key, value, known, stamp)
        return value

    def _remember(self, key: KeyT, scopes: tuple[str, ...]) -> None:
        self._scopes[key] = scopes
        self._scopes.move_to_end(key)
        while len(self._scopes) > self._max_entries:
            self._scopes.popitem(last=False)

    def _store(self, key: KeyT, value: ValueT, scopes: tuple[str, ...], stamp: Stamp) -> None:
        self._drop(key)
        self._entries[key] = _Entry(value, scopes, stamp, self._clock() + self._ttl)
        for scope in scopes:
            self._keys_by_scope.setdefault(scope, set()).add(key)
        while len(self._entries) > self._max_entries:
            self._drop(next(iter(self._entries)))

    def forget(self, scopes: Iterable[str]) -> None:
        """Drop the entries of `scopes` now: they can no longer match a stamp, and
        nobody joins a read of them already under way."""
        for scope in scopes:
            for key in self._keys_by_scope.pop(scope, ()):
                self._drop(key)
                self._reads.pop(key, None)

    def clear(self) -> None:
        self._reads.clear()
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
    """Every cache of the process, with the validator they share."""

    def __init__(self, freshness: Freshness, *, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self.freshness = freshness
        self._ttl = ttl
        self._caches: list[ValidatedCache[object, object]] = []

    def new(self, *, max_entries: int) -> "ValidatedCache[KeyT, ValueT]":
        cache: ValidatedCache[KeyT, ValueT] = ValidatedCache(
            max_entries=max_entries, freshness=self.freshness, ttl=self._ttl
        )
        self._caches.append(cache)  # type: ignore[arg-type]
        return cache

    async def prepare(self, scopes: Collection[str]) -> None:
        """Before a change to `scopes` commits (see Freshness.prepare)."""
        if scopes:
            await self.freshness.prepare(scopes)

    async def changed(self, scopes: Collection[str]) -> None:
        """After a change to `scopes` committed: no stamp taken before matches any more."""
        if not scopes:
            return
        await self.freshness.finish(scopes)
        for cache in self._caches:
            cache.forget(scopes)

    def clear(self) -> None:
        for cache in self._caches:
            cache.clear()

    async def close(self) -> None:
        await self.freshness.close()
