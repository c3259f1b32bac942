"""How a cached entry proves it is still what the database holds.

Every change names the scopes it touches (`user:7`, `project:3`); every scope has a
version that the change moves forward before its request answers. A cache entry carries
the versions of its scopes taken before the database was read (its stamp) and is served
only while a fresh stamp is equal. Three validators, chosen by how the service runs:

* `RedisVersions` (REDIS_URL set): the versions live in Redis, shared by every process,
  and a stamp costs one round trip. A change marks its scopes as being written before it
  commits and moves their versions after; while a mark stands (a writer in flight, or one
  that died between the two steps: the mark expires) nothing of those scopes is cached.
  A Redis that cannot be asked means no stamp: the caches are bypassed, never trusted.
* `SoleProcessVersions` (no Redis): the versions live in this process, which is only
  trusted while it can prove no other process uses the database: on a SQLite file, by a
  lock every process holds on a file beside it (`ProcessPresence`); an in-memory SQLite
  database has no other process. Any other process that opened the file since, even one
  gone again (a `fasttrack` command), starts a new stretch: everything cached is dropped.
* Nothing at all on PostgreSQL without Redis, or with `--workers N` and no Redis: other
  processes cannot be ruled out and nothing tells this one of their changes.
"""

import asyncio
import fcntl
import logging
import os
import secrets
import struct
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("fasttrack.freshness")

Stamp = tuple[object, ...]

# A scope's versions start again from nothing only with a new epoch: a Redis that
# restarted (it keeps nothing on disk) must not let an old stamp match by coincidence.
KEY_PREFIX: Final = "fasttrack:fresh:"
EPOCH_KEY: Final = f"{KEY_PREFIX}epoch"
# How long a writer's mark may outlive a writer that never came back to clear it.
WRITE_MARK_MS: Final = 60_000
# A stamp is one round trip; a Redis that does not answer costs a request this much,
# and is then left alone for a while (every cache bypassed meanwhile).
REDIS_TIMEOUT_SECONDS: Final = 1.0
REDIS_BACKOFF_SECONDS: Final = 1.0
# Attempts to move versions forward after a commit whose first attempt failed: until one
# succeeds, the writer's mark keeps the scopes out of every cache.
FINISH_RETRY_DELAYS: Final = (0.1, 0.5, 1.0, 2.0, 5.0)
# How long a process's finding that it is alone on a SQLite file holds, and so how long
# an arriving process waits before it may write (ProcessPresence.stretch).
ALONE_FOR_SECONDS: Final = 0.02
# Local versions kept before they all start again under a new epoch.
MAX_LOCAL_SCOPES: Final = 1_000_000

# One Lua call per change: its scopes' versions move forward and its writer marks go.
_FINISH: Final = """
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i])
  if redis.call('DECR', KEYS[i + 1]) <= 0 then redis.call('DEL', KEYS[i + 1]) end
end
return 0
"""


class Freshness(Protocol):
    """What the caches ask before they serve or store an entry."""

    async def stamp(self, scopes: Sequence[str]) -> Stamp | None:
        """The current versions of `scopes`, or None: do not cache, do not serve."""

    async def prepare(self, scopes: Collection[str]) -> None:
        """Before a change to `scopes` commits; raises if that cannot be made known."""

    async def finish(self, scopes: Collection[str]) -> None:
        """After a change to `scopes` committed (never raises)."""

    async def close(self) -> None: ...


class LocalVersions:
    """Versions of scopes changed by this process."""

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._epoch = 0

    def of(self, scopes: Sequence[str]) -> Stamp:
        versions = self._versions
        if len(scopes) == 1:  # the usual case, without a generator
            return (self._epoch, versions.get(scopes[0], 0))
        return (self._epoch, *[versions.get(scope, 0) for scope in scopes])

    def move(self, scopes: Collection[str]) -> None:
        if len(self._versions) + len(scopes) > MAX_LOCAL_SCOPES:
            self._versions.clear()
            self._epoch += 1
        for scope in scopes:
            self._versions[scope] = self._versions.get(scope, 0) + 1


class ProcessPresence:
    """Which processes have the SQLite file `path` open, told by POSIX locks on a file
    beside it: each process holds a shared lock on its first byte for its whole life, and
    counts itself in on arrival. A process that gets the exclusive lock for a moment is
    alone; the count tells it whether anyone came (and maybe went) since it last looked.
    """

    _BYTE: Final = 0
    _COUNTER_LOCK: Final = 1
    _COUNTER: Final = struct.Struct("<Q")
    _COUNTER_OFFSET: Final = 8

    def __init__(self, path: Path) -> None:
        self._fd = os.open(f"{path}-processes", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.lockf(self._fd, fcntl.LOCK_SH, 1, self._BYTE)
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, self._COUNTER_LOCK)
        try:
            self._arrivals = self._read_arrivals() + 1
            os.pwrite(self._fd, self._COUNTER.pack(self._arrivals), self._COUNTER_OFFSET)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._COUNTER_LOCK)
        self._stretch = 0
        self._pid = os.getpid()
        self._alone_until = 0.0
        # No write of this process can commit before the others' current findings that
        # they are alone have lapsed (see `stretch`).
        time.sleep(ALONE_FOR_SECONDS)

    def _read_arrivals(self) -> int:
        data = os.pread(self._fd, self._COUNTER.size, self._COUNTER_OFFSET)
        return self._COUNTER.unpack(data)[0] if len(data) == self._COUNTER.size else 0

    def stretch(self) -> int | None:
        """None while another process has the database open; else a number that changes
        whenever one has had it open since the last look.

        A finding that the process is alone holds for ALONE_FOR_SECONDS without looking
        again: a process that arrives after it waits that long after counting itself in,
        before it can change anything, so nothing it writes can commit while the finding
        holds.
        """
        # Read before the look: a process that arrives after it arrives after this moment.
        now = time.monotonic()
        if now < self._alone_until:
            return self._stretch
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self._BYTE)
        except OSError:
            return None
        try:
            arrivals = self._read_arrivals()
        finally:
            # POSIX locks convert in place: the shared lock is never let go meanwhile.
            fcntl.lockf(self._fd, fcntl.LOCK_SH, 1, self._BYTE)
        if arrivals != self._arrivals:
            self._arrivals = arrivals
            self._stretch += 1
        self._alone_until = now + ALONE_FOR_SECONDS
        return self._stretch

    @property
    def pid(self) -> int:
        return self._pid


# A process closes every POSIX lock it holds on a file when it closes any descriptor of
# it: one presence per file and process, shared by every engine of the process.
_presences: dict[Path, ProcessPresence] = {}


def presence_of(database_file: Path) -> ProcessPresence:
    path = database_file.resolve()
    presence = _presences.get(path)
    if presence is None or presence.pid != os.getpid():
        presence = _presences[path] = ProcessPresence(path)
    return presence


class SoleProcessVersions:
    """Versions kept in this process, trusted only while it is the only one."""

    def __init__(self, presence: ProcessPresence | None) -> None:
        self._presence = presence
        self._local = LocalVersions()

    async def stamp(self, scopes: Sequence[str]) -> Stamp | None:
        if self._presence is None:
            return self._local.of(scopes)
        stretch = self._presence.stretch()
        return None if stretch is None else (stretch, *self._local.of(scopes))

    async def prepare(self, scopes: Collection[str]) -> None:
        return None

    async def finish(self, scopes: Collection[str]) -> None:
        self._local.move(scopes)

    async def close(self) -> None:
        return None


class NoVersions:
    """Nothing can prove an entry fresh: nothing is cached."""

    async def stamp(self, scopes: Sequence[str]) -> Stamp | None:
        return None

    async def prepare(self, scopes: Collection[str]) -> None:
        return None

    async def finish(self, scopes: Collection[str]) -> None:
        return None

    async def close(self) -> None:
        return None


def _keys(scopes: Collection[str]) -> list[str]:
    keys: list[str] = []
    for scope in scopes:
        keys += (f"{KEY_PREFIX}v:{scope}", f"{KEY_PREFIX}w:{scope}")
    return keys


class RedisVersions:
    """Versions shared by every process through Redis (see the module's docstring).

    A Redis that failed is not asked again for `REDIS_BACKOFF_SECONDS`: one that stopped
    answering would otherwise cost every request its full timeout, several times over.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = REDIS_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        self._finish = self._redis.register_script(_FINISH)
        self._retries: set[asyncio.Task[None]] = set()
        self._local = LocalVersions()
        self._clock = clock
        self._resting_until = 0.0

    def _resting(self) -> bool:
        return self._clock() < self._resting_until

    def _failed(self, what: str, exc: Exception) -> None:
        if not self._resting():
            logger.warning("%s failed (%s); Redis rests for %g s", what, exc, REDIS_BACKOFF_SECONDS)
        self._resting_until = self._clock() + REDIS_BACKOFF_SECONDS

    async def stamp(self, scopes: Sequence[str]) -> Stamp | None:
        if self._resting():
            return None
        try:
            values = await self._redis.mget([EPOCH_KEY, *_keys(scopes)])
            epoch = values[0]
            if epoch is None:
                # A Redis that lost every key (restarted empty): a new epoch, so that no
                # stamp taken before matches by coincidence.
                epoch = secrets.token_hex(8).encode()
                if not await self._redis.set(EPOCH_KEY, epoch, nx=True):
                    return None  # another process set one first: the next stamp has it
        except (RedisError, OSError) as exc:
            self._failed("a cache stamp", exc)
            return None
        if any(mark is not None and int(mark) > 0 for mark in values[2::2]):
            return None
        # This process's own changes count too: a stamp taken before one of them moved
        # Redis (by its `finish`) is refused here at once.
        return (epoch, *values[1::2], *self._local.of(scopes))

    async def prepare(self, scopes: Collection[str]) -> None:
        # A Redis that cannot be reached does not stop the change: every process that
        # cannot reach it either bypasses its caches, one that restarted empty starts a
        # new epoch, and `finish` keeps trying to move the versions (the README says what
        # is left: a Redis that this process alone cannot reach).
        if self._resting():
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for scope in scopes:
                    mark = f"{KEY_PREFIX}w:{scope}"
                    pipe.incr(f"{KEY_PREFIX}v:{scope}")
                    pipe.incr(mark)
                    pipe.pexpire(mark, WRITE_MARK_MS)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("marking cache scopes as written", exc)

    async def finish(self, scopes: Collection[str]) -> None:
        self._local.move(scopes)
        keys = _keys(scopes)
        if not self._resting():
            try:
                await self._finish(keys=keys)
            except (RedisError, OSError) as exc:
                self._failed("moving cache versions", exc)
            else:
                return
        task = asyncio.create_task(self._finish_later(keys), name="cache-versions")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _finish_later(self, keys: list[str]) -> None:
        for delay in FINISH_RETRY_DELAYS:
            await asyncio.sleep(delay)
            try:
                await self._finish(keys=keys)
            except (RedisError, OSError):
                continue
            return
        logger.error("cache versions not moved; the writer marks expire in %d ms", WRITE_MARK_MS)

    async def close(self) -> None:
        for task in list(self._retries):
            task.cancel()
        await self._redis.aclose()


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    path = database_url.split(":///", 1)[1] if ":///" in database_url else ""
    path = path.split("?", 1)[0]
    if path in ("", ":memory:") or path.startswith("file::memory:"):
        return None
    return Path(path)


def announce_presence(database_url: str) -> ProcessPresence | None:
    """Count this process among those using the database, if it is a SQLite file: every
    process that may write one does, so that the others stop trusting their caches."""
    database_file = sqlite_file(database_url) if database_url.startswith("sqlite") else None
    if database_file is None:
        return None
    try:
        return presence_of(database_file)
    except OSError as exc:
        # No file can be made beside the database: neither can the database itself.
        logger.warning("cannot tell other processes of this one: %s", exc)
        return None


def create_freshness(*, database_url: str, redis_url: str | None, workers: int) -> Freshness:
    presence = announce_presence(database_url)
    if redis_url:
        return RedisVersions(redis_url)
    if workers > 1 or not database_url.startswith("sqlite"):
        return NoVersions()
    if sqlite_file(database_url) is None:
        return SoleProcessVersions(None)  # in memory: no other process can open it
    return NoVersions() if presence is None else SoleProcessVersions(presence)
