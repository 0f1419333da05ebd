"""The TTL cache: age and size bounds, eviction order, and collapsed concurrent misses."""

from __future__ import annotations

import asyncio

import pytest

from stagecast.cache import TtlCache


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class GatedLoad:
    """A loader that counts its calls and holds each one until ``release`` is set."""

    def __init__(self, value: int | None = None) -> None:
        self.value = value  # what a load returns; None: the number of the load
        self.loads = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.loads += 1
        number = self.loads
        self.started.set()
        await self.release.wait()
        return number if self.value is None else self.value


async def test_entries_expire_after_ttl() -> None:
    """A value is served until its age reaches the ttl, then loaded again."""
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(max_entries=10, ttl=5, clock=clock)
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        return loads

    assert await cache.get("a", load) == 1
    clock.now = 4.9
    assert await cache.get("a", load) == 1
    clock.now = 5.0
    assert await cache.get("a", load) == 2


async def test_expired_entries_are_evicted_before_recently_used_ones() -> None:
    """At the size bound, an expired entry goes first even if it was used most recently."""
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(max_entries=2, ttl=10, clock=clock)
    cache.put("old", 1)
    clock.now = 5
    cache.put("fresh", 2)
    clock.now = 10.5  # "old" expired, "fresh" has not
    cache.put("new", 3)
    assert cache.peek("fresh") == 2
    assert cache.peek("new") == 3
    assert cache.peek("old") is None


async def test_least_recently_used_goes_when_nothing_expired() -> None:
    """With every entry fresh, the least recently used is evicted."""
    cache: TtlCache[str, int] = TtlCache(max_entries=2, ttl=100)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.peek("a") == 1  # a is now more recent than b
    cache.put("c", 3)
    assert cache.peek("b") is None
    assert cache.peek("a") == 1
    assert len(cache) == 2


async def test_concurrent_misses_share_one_load() -> None:
    """Twenty simultaneous misses for one key run the loader once."""
    cache: TtlCache[str, int] = TtlCache(max_entries=10, ttl=10)
    load = GatedLoad(42)
    waiters = [asyncio.create_task(cache.get("k", load)) for _ in range(20)]
    await load.started.wait()
    load.release.set()
    assert await asyncio.gather(*waiters) == [42] * 20
    assert load.loads == 1


async def test_failed_loads_are_not_cached() -> None:
    """An error reaches the caller and the next get tries again."""
    cache: TtlCache[str, int] = TtlCache(max_entries=10, ttl=10)

    async def broken() -> int:
        raise RuntimeError("down")

    async def working() -> int:
        return 7

    with pytest.raises(RuntimeError):
        await cache.get("k", broken)
    assert await cache.get("k", working) == 7


def test_bad_bounds_are_refused() -> None:
    """A cache without a size or age bound cannot be made."""
    with pytest.raises(ValueError, match="max_entries"):
        TtlCache(max_entries=0, ttl=1)


async def test_a_load_in_flight_does_not_store_after_invalidate() -> None:
    """Invalidating during a load keeps the (possibly stale) result out of the cache."""
    cache: TtlCache[str, int] = TtlCache(max_entries=10, ttl=10)
    slow = GatedLoad(1)
    waiter = asyncio.create_task(cache.get("k", slow))
    await slow.started.wait()
    cache.invalidate("k")
    slow.release.set()
    assert await waiter == 1  # the caller still gets what it asked for
    assert cache.peek("k") is None  # but nothing stale is kept


async def test_a_cached_none_is_a_hit() -> None:
    """A key whose value is None is served from the cache within the ttl, not loaded again."""
    clock = Clock()
    cache: TtlCache[str, int | None] = TtlCache(max_entries=10, ttl=5, clock=clock)
    loads = 0

    async def load() -> int | None:
        nonlocal loads
        loads += 1
        return None

    assert await cache.get("unknown", load) is None
    clock.now = 4.9
    assert await cache.get("unknown", load) is None
    assert (loads, cache.hits, cache.misses) == (1, 1, 1)
    clock.now = 5.0
    assert await cache.get("unknown", load) is None
    assert loads == 2  # expired: loaded again


async def _detached_by(forget: str) -> tuple[list[int], int | None]:
    """Start a load of "k", forget the key mid-load, get it again; return results and entry."""
    cache: TtlCache[str, int] = TtlCache(max_entries=10, ttl=10)
    load = GatedLoad()
    first = asyncio.create_task(cache.get("k", load))
    await load.started.wait()
    if forget == "invalidate":
        cache.invalidate("k")
    else:
        cache.clear()
    second = asyncio.create_task(cache.get("k", load))
    load.release.set()
    return list(await asyncio.gather(first, second)), cache.peek("k")


@pytest.mark.parametrize("forget", ["invalidate", "clear"])
async def test_a_get_after_invalidate_does_not_join_the_load_in_flight(forget: str) -> None:
    """After invalidate or clear, a get runs its own load and only that one is stored."""
    results, stored = await _detached_by(forget)
    assert results == [1, 2]  # the old load's value reaches only its own caller
    assert stored == 2


async def test_a_fresh_get_skips_the_stored_value_but_shares_the_load_in_flight() -> None:
    """``fresh=True`` reloads a stored key; concurrent fresh gets run the loader once."""
    cache: TtlCache[str, int] = TtlCache(max_entries=10, ttl=10)
    cache.put("k", 0)
    load = GatedLoad(5)
    waiters = [asyncio.create_task(cache.get("k", load, fresh=True)) for _ in range(10)]
    await load.started.wait()  # the load task runs after every waiter has asked
    load.release.set()
    assert await asyncio.gather(*waiters) == [5] * 10
    assert (load.loads, cache.peek("k")) == (1, 5)


async def test_a_stale_value_is_served_when_the_reload_is_slow() -> None:
    """Within ``stale`` seconds past the ttl, a get waits ``patience`` at most, then answers
    the old value; one reload (shared) replaces it when it finishes."""
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(
        max_entries=10, ttl=5, stale=30, patience=0.01, clock=clock
    )
    cache.put("k", 1)
    clock.now = 6.0
    load = GatedLoad(value=2)
    assert await cache.get("k", load) == 1  # the reload is held, the caller is not
    assert await cache.get("k", load) == 1
    await load.started.wait()
    assert load.loads == 1
    assert cache.stale_served == 2
    load.release.set()
    async with asyncio.timeout(1):
        while cache.peek("k") != 2:
            await asyncio.sleep(0)
    assert await cache.get("k", load) == 2


async def test_a_failed_reload_keeps_serving_the_stale_value_until_it_is_too_old() -> None:
    """While the loader fails, the last value is served up to ``stale`` past its ttl; after
    that the error reaches the caller."""
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(max_entries=10, ttl=5, stale=30, clock=clock)
    cache.put("k", 1)

    async def broken() -> int:
        raise RuntimeError("database down")

    clock.now = 20.0
    assert await cache.get("k", broken) == 1
    assert await cache.get("k", broken) == 1  # whether the first reload has failed yet or not
    clock.now = 35.0  # 30 s past the ttl
    with pytest.raises(RuntimeError, match="database down"):
        await cache.get("k", broken)


async def test_a_fast_reload_answers_fresh_even_with_stale_allowed() -> None:
    """A reload that finishes within ``patience`` is what the get returns, not the old value."""
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(max_entries=10, ttl=5, stale=30, patience=5, clock=clock)
    cache.put("k", 1)
    clock.now = 6.0

    async def newer() -> int:
        return 2

    assert await cache.get("k", newer) == 2
    assert cache.stale_served == 0


async def test_without_stale_an_expired_value_waits_for_its_reload() -> None:
    """The default (``stale=0``) never serves an expired value."""
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(max_entries=10, ttl=5, clock=clock)
    cache.put("k", 1)
    clock.now = 5.0

    async def newer() -> int:
        return 2

    assert await cache.get("k", newer) == 2
    assert cache.stale_served == 0
