"""The validators behind the caches: versions kept in this process, trusted while no other
process has the SQLite file open, and versions shared through Redis.

Tests marked `needs_redis` run with TEST_REDIS_URL set.
"""

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import anyio
import pytest
from redis.asyncio import Redis

from fasttrack.core import freshness
from fasttrack.core.cache import ValidatedCache
from fasttrack.core.freshness import (
    EPOCH_KEY,
    KEY_PREFIX,
    LocalVersions,
    NoVersions,
    RedisVersions,
    SoleProcessVersions,
    create_freshness,
    presence_of,
    sqlite_file,
)

REDIS_URL = os.environ.get("TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="set TEST_REDIS_URL to run")
UNREACHABLE_REDIS: Final = "redis://127.0.0.1:1/0"
TIMEOUT: Final = 5.0
# Another process that opens the database, announces itself, and waits for a line on stdin.
OTHER_PROCESS: Final = """
import sys
from pathlib import Path
from fasttrack.core.freshness import presence_of
presence_of(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
"""
# Another process that opens the database and is gone again (a `fasttrack` command).
PASSING_PROCESS: Final = """
import sys
from pathlib import Path
from fasttrack.core.freshness import presence_of
presence_of(Path(sys.argv[1]))
"""


# --- Versions kept in this process --------------------------------------------------------


def test_local_stamps_move_only_with_their_scopes() -> None:
    versions = LocalVersions()
    before = {scope: versions.of([scope]) for scope in ("user:1", "user:2")}
    both = versions.of(["user:1", "user:2"])
    assert versions.of(["user:1"]) == before["user:1"]

    versions.move(["user:1"])

    assert versions.of(["user:1"]) != before["user:1"]
    assert versions.of(["user:1", "user:2"]) != both
    assert versions.of(["user:2"]) == before["user:2"]


def test_too_many_local_scopes_start_a_new_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(freshness, "MAX_LOCAL_SCOPES", 3)
    versions = LocalVersions()
    versions.move(["user:1", "user:2", "user:3"])
    before = {scope: versions.of([scope]) for scope in ("user:1", "user:3", "untouched")}

    versions.move(["user:4"])

    # The versions start again from nothing: an old stamp must not match by coincidence.
    after = {scope: versions.of([scope]) for scope in before}
    assert all(after[scope] != before[scope] for scope in before)


# --- Versions trusted while this process is alone on the SQLite file ---------------------


@contextmanager
def _another_process(database: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with `database` open, for the duration of the block."""
    process = subprocess.Popen(  # noqa: S603  (the test's own command line)
        [sys.executable, "-c", OTHER_PROCESS, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        assert process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.stdin.write("\n")
        process.stdin.close()
        process.wait(timeout=TIMEOUT)
        process.stdout.close()


def _pass_by(database: Path) -> None:
    command = [sys.executable, "-c", PASSING_PROCESS, str(database)]
    subprocess.run(command, check=True)  # noqa: S603  (the test's own command line)


async def test_alone_on_the_file_the_stamps_stay_until_a_change(tmp_path: Path) -> None:
    versions = SoleProcessVersions(presence_of(tmp_path / "alone.db"))

    first = await versions.stamp(["user:1"])
    assert first is not None
    assert await versions.stamp(["user:1"]) == first
    await versions.finish(["user:1"])

    assert await versions.stamp(["user:1"]) not in (None, first)


async def test_no_stamp_while_another_process_has_the_file_open(tmp_path: Path) -> None:
    database = tmp_path / "shared.db"
    versions = SoleProcessVersions(presence_of(database))
    before = await versions.stamp(["user:1"])
    assert before is not None

    with _another_process(database):
        assert await versions.stamp(["user:1"]) is None
        assert await versions.stamp(["user:2"]) is None

    # What it changed while it was there was never told: nothing from before matches.
    after = await versions.stamp(["user:1"])
    assert after not in (None, before)
    assert await versions.stamp(["user:1"]) == after


async def test_a_process_that_came_and_went_between_two_stamps_changes_them(
    tmp_path: Path,
) -> None:
    database = tmp_path / "visited.db"
    versions = SoleProcessVersions(presence_of(database))
    before = await versions.stamp(["user:1"])
    assert before is not None

    _pass_by(database)

    after = await versions.stamp(["user:1"])
    assert after not in (None, before)


async def test_an_entry_stored_before_another_process_came_is_not_served(
    tmp_path: Path,
) -> None:
    database = tmp_path / "cached.db"
    cache: ValidatedCache[str, str] = ValidatedCache(
        max_entries=10, freshness=SoleProcessVersions(presence_of(database))
    )
    calls = 0

    async def read() -> str:
        nonlocal calls
        calls += 1
        return f"read {calls}"

    await cache.get_or_read("a", read, scopes=["user:1"])
    assert await cache.get_or_read("a", read, scopes=["user:1"]) == "read 1"

    with _another_process(database):
        assert await cache.get_or_read("a", read, scopes=["user:1"]) == "read 2"
    _pass_by(database)

    assert await cache.get_or_read("a", read, scopes=["user:1"]) == "read 3"
    assert await cache.get_or_read("a", read, scopes=["user:1"]) == "read 3"


def test_one_presence_per_file_in_a_process(tmp_path: Path) -> None:
    database = tmp_path / "once.db"

    assert presence_of(database) is presence_of(tmp_path / "." / "once.db")
    assert presence_of(database) is not presence_of(tmp_path / "other.db")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "sqlite+aiosqlite:////var/lib/fasttrack/fasttrack.db",
            Path("/var/lib/fasttrack/fasttrack.db"),
        ),
        ("sqlite+aiosqlite:///./fasttrack.db", Path("fasttrack.db")),
        ("sqlite:///data/app.db?timeout=5", Path("data/app.db")),
        ("sqlite+aiosqlite://", None),
        ("sqlite+aiosqlite:///:memory:", None),
        ("sqlite+aiosqlite:///file::memory:?cache=shared", None),
    ],
)
def test_sqlite_file_names_the_file_of_a_url(url: str, expected: Path | None) -> None:
    assert sqlite_file(url) == expected


# --- Which validator a deployment gets ---------------------------------------------------


async def test_with_redis_the_versions_are_shared_through_it(tmp_path: Path) -> None:
    for url in (f"sqlite+aiosqlite:///{tmp_path}/r.db", "postgresql+asyncpg://db/x"):
        chosen = create_freshness(database_url=url, redis_url=UNREACHABLE_REDIS, workers=4)
        try:
            assert isinstance(chosen, RedisVersions)
        finally:
            await chosen.close()


@pytest.mark.parametrize(
    ("url", "workers"),
    [
        ("postgresql+asyncpg://postgres@127.0.0.1:1/fasttrack", 1),
        ("sqlite+aiosqlite:///{tmp}/workers.db", 2),
        ("sqlite+aiosqlite:///:memory:", 2),
        ("sqlite+aiosqlite:///{tmp}/missing/fasttrack.db", 1),
    ],
    ids=["PostgreSQL", "several workers", "several workers in memory", "missing directory"],
)
async def test_without_redis_other_processes_that_cannot_be_ruled_out_mean_no_versions(
    tmp_path: Path, url: str, workers: int
) -> None:
    chosen = create_freshness(
        database_url=url.format(tmp=tmp_path), redis_url=None, workers=workers
    )

    assert isinstance(chosen, NoVersions)
    assert await chosen.stamp(["user:1"]) is None


@pytest.mark.parametrize(
    "url",
    ["sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite://", "sqlite+aiosqlite:///{tmp}/one.db"],
)
async def test_one_process_on_sqlite_keeps_its_own_versions(tmp_path: Path, url: str) -> None:
    chosen = create_freshness(database_url=url.format(tmp=tmp_path), redis_url=None, workers=1)

    assert isinstance(chosen, SoleProcessVersions)
    assert await chosen.stamp(["user:1"]) is not None


# --- Versions shared through Redis --------------------------------------------------------


async def _forget_versions(redis: Redis) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{KEY_PREFIX}*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A client of the test Redis, on which no version, mark or epoch is left."""
    assert REDIS_URL is not None
    async with Redis.from_url(REDIS_URL) as client:
        await _forget_versions(client)
        yield client
        await _forget_versions(client)
        # The other tests' apps share this Redis: leave them an epoch to stamp with.
        await client.set(EPOCH_KEY, secrets.token_hex(8), nx=True)


@pytest.fixture
async def versions(redis: Redis) -> AsyncIterator[RedisVersions]:
    assert REDIS_URL is not None
    shared = RedisVersions(REDIS_URL)
    try:
        yield shared
    finally:
        await shared.close()


async def _stamp(versions: RedisVersions, *scopes: str) -> tuple[object, ...]:
    stamp = await versions.stamp(scopes)
    assert stamp is not None
    return stamp


@needs_redis
async def test_the_first_stamp_sets_the_epoch_and_is_a_stamp(
    redis: Redis, versions: RedisVersions
) -> None:
    first = await _stamp(versions, "user:1")  # sets the epoch, and is a stamp already

    assert await redis.get(EPOCH_KEY) is not None
    assert first[0] == await redis.get(EPOCH_KEY)
    assert await _stamp(versions, "user:1") == first


@needs_redis
async def test_no_stamp_while_a_writer_is_in_flight_and_a_new_one_after(
    redis: Redis, versions: RedisVersions
) -> None:
    await versions.stamp([])
    before, bystander = await _stamp(versions, "user:1"), await _stamp(versions, "user:2")

    await versions.prepare(["user:1"])

    assert await versions.stamp(["user:1"]) is None
    assert await versions.stamp(["user:2", "user:1"]) is None
    assert await _stamp(versions, "user:2") == bystander

    await versions.finish(["user:1"])

    assert await redis.exists(f"{KEY_PREFIX}w:user:1") == 0
    assert await _stamp(versions, "user:1") != before
    assert await _stamp(versions, "user:2") == bystander


@needs_redis
async def test_the_mark_of_a_writer_that_never_finished_expires(
    monkeypatch: pytest.MonkeyPatch, versions: RedisVersions
) -> None:
    monkeypatch.setattr(freshness, "WRITE_MARK_MS", 50)
    await versions.stamp([])
    before = await _stamp(versions, "user:1")

    await versions.prepare(["user:1"])  # and the writer dies before it finishes
    assert await versions.stamp(["user:1"]) is None

    with anyio.fail_after(TIMEOUT):
        while (after := await versions.stamp(["user:1"])) is None:  # noqa: ASYNC110
            await anyio.sleep(0.02)
    assert after != before


@needs_redis
async def test_a_change_finished_by_one_process_changes_the_stamps_of_another(
    redis: Redis,
) -> None:
    assert REDIS_URL is not None
    writer, reader = RedisVersions(REDIS_URL), RedisVersions(REDIS_URL)
    try:
        await reader.stamp([])
        before = await _stamp(reader, "project:3", "project-tasks:3")
        bystander = await _stamp(reader, "project:4")

        await writer.prepare(["project-tasks:3"])
        assert await reader.stamp(["project:3", "project-tasks:3"]) is None
        await writer.finish(["project-tasks:3"])

        assert await _stamp(reader, "project:3", "project-tasks:3") != before
        assert await _stamp(reader, "project:4") == bystander
    finally:
        await writer.close()
        await reader.close()


@needs_redis
async def test_a_change_finished_without_a_prepare_still_moves_the_stamps(
    redis: Redis,
) -> None:
    assert REDIS_URL is not None
    writer, reader = RedisVersions(REDIS_URL), RedisVersions(REDIS_URL)
    try:
        await reader.stamp([])
        before = await _stamp(reader, "user:1")

        await writer.finish(["user:1"])

        assert await _stamp(reader, "user:1") != before
        assert await redis.exists(f"{KEY_PREFIX}w:user:1") == 0
    finally:
        await writer.close()
        await reader.close()


@needs_redis
async def test_a_redis_that_lost_its_keys_changes_every_stamp(
    redis: Redis, versions: RedisVersions
) -> None:
    await versions.stamp([])
    untouched, changed = await _stamp(versions, "user:1"), await _stamp(versions, "user:2")
    await versions.finish(["user:2"])

    await _forget_versions(redis)  # as a restart of a Redis that keeps nothing on disk

    assert await _stamp(versions, "user:1") != untouched  # under a new epoch
    assert await _stamp(versions, "user:2") != changed


def _retries() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task.get_name() == "cache-versions"}


async def test_an_unreachable_redis_gives_no_stamp_and_never_fails_a_change() -> None:
    versions = RedisVersions(UNREACHABLE_REDIS)
    earlier = _retries()
    try:
        assert await versions.stamp(["user:1"]) is None
        await versions.prepare(["user:1"])
        await versions.finish(["user:1"])  # committed: the versions move once Redis is back
        retries = _retries() - earlier
        assert len(retries) == 1
        assert not any(retry.done() for retry in retries)
    finally:
        await versions.close()

    await asyncio.gather(*retries, return_exceptions=True)
    assert all(retry.cancelled() for retry in retries)


async def test_a_redis_that_stops_answering_is_left_alone_for_the_back_off() -> None:
    received: list[bytes] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            received.append(data)  # read, never answered
        writer.close()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    now = [0.0]
    versions = RedisVersions(f"redis://127.0.0.1:{port}/0", timeout=0.2, clock=lambda: now[0])
    try:
        assert await versions.stamp(["user:1"]) is None  # waited for its timeout
        asked = len(received)
        assert asked > 0

        assert await versions.stamp(["user:1"]) is None
        await versions.prepare(["user:1"])
        assert len(received) == asked  # nothing more was sent while it rests

        now[0] += freshness.REDIS_BACKOFF_SECONDS
        assert await versions.stamp(["user:1"]) is None
        assert len(received) > asked  # asked again after the back-off
    finally:
        await versions.close()
        silent.close()
        await silent.wait_closed()
