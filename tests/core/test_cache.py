"""The validated caches on their own: stamps decide what is served, then time to live,
the bound, forgetting, and reads shared by callers missing the same entry."""

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

import pytest

from fasttrack.core import cache as cache_module
from fasttrack.core.cache import Caches, ValidatedCache
from fasttrack.core.freshness import Stamp

# Long enough for a caller that should not wait to show that it did not.
PROMPTLY: Final = 1.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Versions:
    """A validator set by hand: a version per scope, and a switch that refuses stamps."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.stampable = True
        self.prepared: list[set[str]] = []
        self.finished: list[set[str]] = []

    def move(self, *scopes: str) -> None:
        for scope in scopes:
            self.versions[scope] = self.versions.get(scope, 0) + 1

    async def stamp(self, scopes: Sequence[str]) -> Stamp | None:
        if not self.stampable:
            return None
        return tuple(self.versions.get(scope, 0) for scope in scopes)

    async def prepare(self, scopes: Collection[str]) -> None:
        self.prepared.append(set(scopes))

    async def finish(self, scopes: Collection[str]) -> None:
        self.finished.append(set(scopes))
        self.move(*scopes)

    async def close(self) -> None:
        return None


class Reader:
    """A `read` that counts its calls and answers a new value each time."""

    def __init__(self, name: str = "value") -> None:
        self.name = name
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return f"{self.name} {self.calls}"


class HeldReader(Reader):
    """A `read` that stays open until the test lets it answer (or fail)."""

    def __init__(self, name: str = "held", *, fails: bool = False) -> None:
        super().__init__(name)
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self._fails = fails

    async def __call__(self) -> str:
        value = await super().__call__()
        self.started.set()
        await self.release.wait()
        if self._fails:
            raise RuntimeError("the database went away")
        return value


def _cache(
    versions: Versions,
    *,
    max_entries: int = 100,
    ttl: float = 60.0,
    clock: Clock | None = None,
) -> ValidatedCache[str, str]:
    return ValidatedCache(
        max_entries=max_entries, freshness=versions, ttl=ttl, clock=clock or Clock()
    )


async def _get(
    cache: ValidatedCache[str, str], key: str, read: Reader, *scopes: str, may_wait: bool = True
) -> str | None:
    return await cache.get_or_read(
        key, read, scopes=list(scopes) or [f"scope:{key}"], may_wait=may_wait
    )


# --- What is stored and served ------------------------------------------------------------


async def test_a_value_with_known_scopes_is_stored_by_the_first_read_and_served_next() -> None:
    cache, read = _cache(Versions()), Reader()

    assert await _get(cache, "a", read, "user:1") == "value 1"
    assert "a" in cache
    assert await _get(cache, "a", read, "user:1") == "value 1"
    assert await _get(cache, "a", read, "user:1") == "value 1"

    assert read.calls == 1
    assert len(cache) == 1


@dataclass(frozen=True)
class Row:
    project_id: int
    title: str


async def test_scopes_found_in_the_value_are_learnt_then_stored_then_served() -> None:
    cache: ValidatedCache[int, Row] = ValidatedCache(max_entries=10, freshness=Versions())
    calls = 0

    async def read() -> Row:
        nonlocal calls
        calls += 1
        return Row(project_id=3, title=f"read {calls}")

    def scopes(row: Row) -> list[str]:
        return [f"project-tasks:{row.project_id}"]

    first = await cache.get_or_read(7, read, scopes=scopes)
    assert (first, 7 in cache) == (Row(3, "read 1"), False)  # only the scopes were learnt
    second = await cache.get_or_read(7, read, scopes=scopes)
    assert (second, 7 in cache) == (Row(3, "read 2"), True)
    third = await cache.get_or_read(7, read, scopes=scopes)

    assert third == Row(3, "read 2")
    assert calls == 2


async def test_nothing_found_is_never_stored() -> None:
    cache = _cache(Versions())
    calls = 0

    async def read() -> str | None:
        nonlocal calls
        calls += 1
        return None

    for _ in range(2):
        assert await cache.get_or_read("gone", read, scopes=["user:1"]) is None

    assert calls == 2
    assert "gone" not in cache


async def test_a_change_makes_the_next_call_read_again() -> None:
    versions = Versions()
    cache, read = _cache(versions), Reader()
    await _get(cache, "a", read, "user:1")

    versions.move("user:1")

    assert await _get(cache, "a", read, "user:1") == "value 2"
    assert await _get(cache, "a", read, "user:1") == "value 2"
    assert read.calls == 2


@pytest.mark.parametrize("changed", ["project:1", "project-tasks:1"])
async def test_an_entry_with_two_scopes_dies_with_either(changed: str) -> None:
    versions = Versions()
    cache, read = _cache(versions), Reader()
    await _get(cache, "task", read, "project:1", "project-tasks:1")

    versions.move(changed)

    assert await _get(cache, "task", read, "project:1", "project-tasks:1") == "value 2"


async def test_a_change_leaves_the_entries_of_other_scopes_alone() -> None:
    versions = Versions()
    cache = _cache(versions)
    mine, theirs = Reader("mine"), Reader("theirs")
    await _get(cache, "mine", mine, "user:1")
    await _get(cache, "theirs", theirs, "user:2")

    versions.move("user:1", "project:9")

    assert await _get(cache, "theirs", theirs, "user:2") == "theirs 1"
    assert await _get(cache, "mine", mine, "user:1") == "mine 2"
    assert (mine.calls, theirs.calls) == (2, 1)


async def test_a_read_that_raced_a_change_is_never_served() -> None:
    versions = Versions()
    cache = _cache(versions)
    calls = 0

    async def read() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            # A change commits while this read is under way: what it read may be stale.
            versions.move("user:1")
        return f"value {calls}"

    assert await cache.get_or_read("a", read, scopes=["user:1"]) == "value 1"
    assert "a" in cache  # stored, under the stamp taken before the read

    assert await cache.get_or_read("a", read, scopes=["user:1"]) == "value 2"
    assert await cache.get_or_read("a", read, scopes=["user:1"]) == "value 2"
    assert calls == 2


async def test_without_a_stamp_every_call_reads_and_nothing_is_stored() -> None:
    versions = Versions()
    versions.stampable = False
    cache, read = _cache(versions), Reader()

    for number in range(1, 4):
        assert await _get(cache, "a", read, "user:1") == f"value {number}"

    assert read.calls == 3
    assert len(cache) == 0
    assert "a" not in cache


async def test_an_entry_is_not_served_while_no_stamp_can_be_had() -> None:
    versions = Versions()
    cache, read = _cache(versions), Reader()
    await _get(cache, "a", read, "user:1")

    versions.stampable = False

    assert await _get(cache, "a", read, "user:1") == "value 2"
    assert await _get(cache, "a", read, "user:1") == "value 3"


async def test_scopes_found_in_the_value_are_still_learnt_without_a_stamp() -> None:
    versions = Versions()
    versions.stampable = False
    cache: ValidatedCache[int, Row] = ValidatedCache(max_entries=10, freshness=versions)
    calls = 0

    async def read() -> Row:
        nonlocal calls
        calls += 1
        return Row(project_id=3, title=f"read {calls}")

    def scopes(row: Row) -> list[str]:
        return [f"project-tasks:{row.project_id}"]

    await cache.get_or_read(7, read, scopes=scopes)
    await cache.get_or_read(7, read, scopes=scopes)
    versions.stampable = True
    assert await cache.get_or_read(7, read, scopes=scopes) == Row(3, "read 3")  # stored

    assert await cache.get_or_read(7, read, scopes=scopes) == Row(3, "read 3")
    assert calls == 3


# --- Time to live, bound, forgetting ------------------------------------------------------


async def test_an_entry_expires_after_its_time_to_live() -> None:
    clock = Clock()
    cache, read = _cache(Versions(), ttl=60.0, clock=clock), Reader()
    await _get(cache, "a", read)

    clock.now += 59.9
    assert await _get(cache, "a", read) == "value 1"
    clock.now += 0.1

    assert await _get(cache, "a", read) == "value 2"
    assert read.calls == 2


async def test_serving_an_entry_does_not_extend_its_time_to_live() -> None:
    clock = Clock()
    cache, read = _cache(Versions(), ttl=10.0, clock=clock), Reader()
    await _get(cache, "a", read)

    for _ in range(3):
        clock.now += 3.0
        assert await _get(cache, "a", read) == "value 1"
    clock.now += 1.0

    assert await _get(cache, "a", read) == "value 2"


async def test_a_time_to_live_of_zero_turns_caching_off() -> None:
    cache, read = _cache(Versions(), ttl=0), Reader()

    for number in range(1, 4):
        assert await _get(cache, "a", read) == f"value {number}"

    assert len(cache) == 0


async def test_the_bound_evicts_the_least_recently_used_entry() -> None:
    cache = _cache(Versions(), max_entries=2)
    reads = {key: Reader(key) for key in "abc"}
    await _get(cache, "a", reads["a"])
    await _get(cache, "b", reads["b"])
    assert await _get(cache, "a", reads["a"]) == "a 1"  # now more recent than b

    await _get(cache, "c", reads["c"])

    assert len(cache) == 2
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert await _get(cache, "b", reads["b"]) == "b 2"
    assert (reads["a"].calls, reads["c"].calls) == (1, 1)


async def test_forget_drops_exactly_the_entries_of_the_scopes() -> None:
    cache = _cache(Versions())
    reads = {key: Reader(key) for key in ("mine", "also mine", "theirs", "task")}
    await _get(cache, "mine", reads["mine"], "user:1")
    await _get(cache, "also mine", reads["also mine"], "user:1")
    await _get(cache, "theirs", reads["theirs"], "user:2")
    await _get(cache, "task", reads["task"], "project:1", "project-tasks:1")

    cache.forget(["user:1", "project-tasks:1", "user:99"])

    assert len(cache) == 1
    assert "theirs" in cache
    assert await _get(cache, "theirs", reads["theirs"], "user:2") == "theirs 1"
    assert await _get(cache, "mine", reads["mine"], "user:1") == "mine 2"
    # Still indexed by its other scope: forgetting that one drops the new entry too.
    await _get(cache, "task", reads["task"], "project:1", "project-tasks:1")
    cache.forget(["project:1"])
    assert "task" not in cache


async def test_clear_drops_every_entry() -> None:
    cache, read = _cache(Versions()), Reader()
    for key in ("a", "b"):
        await _get(cache, key, read)

    cache.clear()

    assert len(cache) == 0
    assert await _get(cache, "a", read) == "value 3"


# --- Callers missing the same entry -------------------------------------------------------


async def test_callers_missing_the_same_entry_share_one_read() -> None:
    cache, first, second = _cache(Versions()), HeldReader(), Reader("second")
    leader = asyncio.create_task(_get(cache, "a", first))
    await first.started.wait()

    joiner = asyncio.create_task(_get(cache, "a", second))
    await asyncio.sleep(0)
    first.release.set()

    assert (await leader, await joiner) == ("held 1", "held 1")
    assert (first.calls, second.calls) == (1, 0)


async def test_a_caller_that_may_not_wait_reads_for_itself() -> None:
    cache, first, second = _cache(Versions()), HeldReader(), Reader("second")
    leader = asyncio.create_task(_get(cache, "a", first))
    await first.started.wait()

    # It holds a turn the first reader may be waiting for: it must not wait on it.
    alone = await asyncio.wait_for(_get(cache, "a", second, may_wait=False), PROMPTLY)

    assert alone == "second 1"
    assert not leader.done()
    first.release.set()
    assert await leader == "held 1"


async def test_a_caller_waits_for_a_shared_read_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache_module, "SHARED_READ_WAIT_SECONDS", 0.05)
    cache, first, second = _cache(Versions()), HeldReader(), Reader("second")
    leader = asyncio.create_task(_get(cache, "a", first))
    await first.started.wait()

    late = await asyncio.wait_for(_get(cache, "a", second), PROMPTLY)

    assert late == "second 1"
    assert not leader.done()
    first.release.set()
    assert await leader == "held 1"


async def test_a_failed_shared_read_makes_the_caller_read_for_itself() -> None:
    cache, first, second = _cache(Versions()), HeldReader(fails=True), Reader("second")
    leader = asyncio.create_task(_get(cache, "a", first))
    await first.started.wait()
    joiner = asyncio.create_task(_get(cache, "a", second))
    await asyncio.sleep(0)

    first.release.set()

    with pytest.raises(RuntimeError):
        await leader
    assert await joiner == "second 1"
    assert second.calls == 1


async def test_a_caller_stamped_after_a_change_does_not_join_a_read_from_before() -> None:
    versions = Versions()
    cache, first, second = _cache(versions), HeldReader(), Reader("second")
    leader = asyncio.create_task(_get(cache, "a", first, "user:1"))
    await first.started.wait()

    versions.move("user:1")  # what the first read returns may predate the change
    after = await asyncio.wait_for(_get(cache, "a", second, "user:1"), PROMPTLY)

    assert after == "second 1"
    first.release.set()
    assert await leader == "held 1"
    assert await _get(cache, "a", second, "user:1") != "held 1"


# --- Every cache of the process -----------------------------------------------------------


async def test_changed_moves_the_versions_and_forgets_the_scopes_in_every_cache() -> None:
    versions = Versions()
    caches = Caches(versions)
    principals: ValidatedCache[str, str] = caches.new(max_entries=10)
    tasks: ValidatedCache[str, str] = caches.new(max_entries=10)
    await _get(principals, "token", Reader(), "user:1")
    await _get(principals, "other token", Reader(), "user:2")
    await _get(tasks, "task", Reader(), "project-tasks:1")

    await caches.changed({"user:1", "project-tasks:1"})

    assert versions.finished == [{"user:1", "project-tasks:1"}]
    assert ("token" in principals, "task" in tasks) == (False, False)
    assert "other token" in principals

    await caches.changed(set())
    assert len(versions.finished) == 1


async def test_prepare_passes_on_scopes_only_when_there_are_some() -> None:
    versions = Versions()
    caches = Caches(versions)

    await caches.prepare(set())
    await caches.prepare({"user:1"})

    assert versions.prepared == [{"user:1"}]


async def test_caches_bound_each_cache_by_its_own_size() -> None:
    caches = Caches(Versions())
    small: ValidatedCache[str, str] = caches.new(max_entries=1)
    large: ValidatedCache[str, str] = caches.new(max_entries=3)
    read = Reader()
    for key in ("a", "b", "c"):
        await _get(small, key, read)
        await _get(large, key, read)

    assert (len(small), len(large)) == (1, 3)
    assert "c" in small


async def test_caches_pass_their_time_to_live_on_and_clear_every_cache() -> None:
    caches = Caches(Versions(), ttl=0)
    off: ValidatedCache[str, str] = caches.new(max_entries=10)
    await _get(off, "a", Reader())
    assert len(off) == 0

    caches = Caches(Versions())
    first: ValidatedCache[str, str] = caches.new(max_entries=10)
    second: ValidatedCache[str, str] = caches.new(max_entries=10)
    await _get(first, "a", Reader())
    await _get(second, "b", Reader())

    caches.clear()

    assert (len(first), len(second)) == (0, 0)
