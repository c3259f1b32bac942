"""The exact caches on their own: bound, scopes, the race guard, time to live, continuity."""

from fasttrack.core.cache import Caches, ExactCache


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Delivery:
    """What a broker's `continuity()` answers, set by hand: a stretch number, or None."""

    def __init__(self, stretch: int | None = 0) -> None:
        self.stretch = stretch

    def __call__(self) -> int | None:
        return self.stretch


def _cache(
    *,
    max_entries: int = 100,
    delivery: Delivery | None = None,
    ttl: float = 60.0,
    clock: Clock | None = None,
) -> ExactCache[str, str]:
    return ExactCache(
        max_entries=max_entries,
        continuity=delivery or Delivery(),
        ttl=ttl,
        clock=clock or Clock(),
    )


def _put(cache: ExactCache[str, str], key: str, *scopes: str) -> None:
    cache.put(key, f"value of {key}", scopes=scopes or (f"scope:{key}",), since=cache.since())


def test_a_stored_value_is_served_until_something_drops_it() -> None:
    cache = _cache()
    _put(cache, "a")

    assert cache.get("a") == "value of a"
    assert cache.get("b") is None
    assert len(cache) == 1


def test_the_bound_evicts_the_least_recently_used_entry() -> None:
    cache = _cache(max_entries=2)
    _put(cache, "a")
    _put(cache, "b")
    assert cache.get("a") == "value of a"  # a is now more recent than b

    _put(cache, "c")

    assert len(cache) == 2
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == ("value of a", "value of c")


def test_storing_a_key_again_replaces_it_and_makes_it_recent() -> None:
    cache = _cache(max_entries=2)
    _put(cache, "a", "old")
    _put(cache, "b")
    cache.put("a", "new a", scopes=["new"], since=cache.since())

    _put(cache, "c")

    assert cache.get("a") == "new a"
    assert cache.get("b") is None
    cache.invalidate(["old"])  # the replaced entry's scopes no longer hold it
    assert cache.get("a") == "new a"
    cache.invalidate(["new"])
    assert cache.get("a") is None


def test_invalidating_a_scope_drops_exactly_its_entries() -> None:
    cache = _cache()
    _put(cache, "mine", "user:1")
    _put(cache, "also mine", "user:1")
    _put(cache, "theirs", "user:2")

    cache.invalidate(["user:1"])

    assert cache.get("mine") is None
    assert cache.get("also mine") is None
    assert cache.get("theirs") == "value of theirs"
    assert len(cache) == 1


def test_an_entry_with_two_scopes_dies_with_either() -> None:
    for dying in ("project:1", "project-tasks:1"):
        cache = _cache()
        _put(cache, "task", "project:1", "project-tasks:1")
        _put(cache, "bystander", "project:2")

        cache.invalidate([dying])

        assert cache.get("task") is None, dying
        assert cache.get("bystander") == "value of bystander"


def test_a_key_stored_again_answers_only_to_its_new_scopes() -> None:
    cache = _cache()
    _put(cache, "task", "project:1", "project-tasks:1")
    cache.invalidate(["project:1"])
    _put(cache, "task", "project:2")

    cache.invalidate(["project-tasks:1"])

    assert cache.get("task") == "value of task"


def test_invalidating_a_scope_without_entries_drops_nothing() -> None:
    cache = _cache()
    _put(cache, "a", "user:1")

    cache.invalidate(["user:99", "project:1"])

    assert cache.get("a") == "value of a"


def test_a_put_whose_read_predates_an_invalidation_is_dropped() -> None:
    cache = _cache()
    since = cache.since()  # taken before the database is read
    cache.invalidate(["user:2"])  # a change commits meanwhile, of any scope

    cache.put("a", "read before the change", scopes=["user:1"], since=since)

    assert cache.get("a") is None
    assert len(cache) == 0


def test_a_put_whose_read_predates_a_clear_is_dropped() -> None:
    cache = _cache()
    since = cache.since()
    cache.clear()

    cache.put("a", "read before the clear", scopes=["user:1"], since=since)

    assert cache.get("a") is None


def test_a_put_with_a_fresh_mark_after_an_invalidation_is_kept() -> None:
    cache = _cache()
    cache.invalidate(["user:1"])

    _put(cache, "a", "user:1")

    assert cache.get("a") == "value of a"


def test_an_entry_expires_after_its_time_to_live() -> None:
    clock = Clock()
    cache = _cache(ttl=60.0, clock=clock)
    _put(cache, "a")

    clock.now += 59.9
    assert cache.get("a") == "value of a"
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0


def test_reading_an_entry_does_not_extend_its_time_to_live() -> None:
    clock = Clock()
    cache = _cache(ttl=10.0, clock=clock)
    _put(cache, "a")

    for _ in range(3):
        clock.now += 3.0
        assert cache.get("a") == "value of a"
    clock.now += 1.0

    assert cache.get("a") is None


def test_without_continuity_the_cache_is_bypassed() -> None:
    cache = _cache(delivery=Delivery(None))

    _put(cache, "a")

    assert cache.get("a") is None
    assert len(cache) == 0


def test_losing_continuity_hides_and_forgets_what_was_stored() -> None:
    delivery = Delivery(0)
    cache = _cache(delivery=delivery)
    _put(cache, "a")

    delivery.stretch = None
    assert cache.get("a") is None
    delivery.stretch = 0  # even the same stretch again: the entry is gone for good

    assert cache.get("a") is None
    assert len(cache) == 0


def test_a_new_stretch_of_continuity_starts_from_an_empty_cache() -> None:
    delivery = Delivery(0)
    cache = _cache(delivery=delivery)
    _put(cache, "a")
    _put(cache, "b")

    delivery.stretch = 1  # events of the gap between the two stretches never arrived

    assert cache.get("a") is None
    assert cache.get("b") is None
    _put(cache, "a")
    assert cache.get("a") == "value of a"


def test_a_put_whose_read_spanned_a_break_in_continuity_is_dropped() -> None:
    delivery = Delivery(0)
    cache = _cache(delivery=delivery)
    assert cache.get("a") is None  # a miss, as before every read
    since = cache.since()
    # While the value is read, delivery breaks and comes back as a new stretch: an
    # invalidation published in the gap never arrives, so the value may already be stale.
    delivery.stretch = 1

    cache.put("a", "read across the gap", scopes=["user:1"], since=since)

    assert cache.get("a") is None


def test_caches_invalidate_and_clear_every_cache_they_made() -> None:
    caches = Caches(Delivery(0))
    principals: ExactCache[str, str] = caches.new(max_entries=10)
    tasks: ExactCache[str, str] = caches.new(max_entries=10)
    _put(principals, "token", "user:1")
    _put(principals, "other token", "user:2")
    _put(tasks, "task", "project-tasks:1")

    caches.invalidate(["user:1", "project-tasks:1"])

    assert principals.get("token") is None
    assert tasks.get("task") is None
    assert principals.get("other token") == "value of other token"

    caches.clear()
    assert principals.get("other token") is None


def test_caches_share_the_continuity_they_were_given() -> None:
    delivery = Delivery(None)
    caches = Caches(delivery)
    cache: ExactCache[str, str] = caches.new(max_entries=10)

    _put(cache, "a")
    assert cache.get("a") is None

    delivery.stretch = 3
    _put(cache, "a")
    assert cache.get("a") == "value of a"


def test_caches_bound_each_cache_by_its_own_size() -> None:
    caches = Caches(Delivery(0))
    small: ExactCache[str, str] = caches.new(max_entries=1)
    large: ExactCache[str, str] = caches.new(max_entries=3)
    for key in ("a", "b", "c"):
        _put(small, key)
        _put(large, key)

    assert (len(small), len(large)) == (1, 3)
    assert small.get("c") == "value of c"
