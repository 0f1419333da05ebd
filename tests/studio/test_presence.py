"""Viewer presence: gone after two missed heartbeats, peak, unique; memory and Redis alike."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

import pytest
from redis.asyncio import Redis

from stagecast.live.hooks import ViewEvent
from stagecast.studio.hyperloglog import HyperLogLog
from stagecast.studio.presence import (
    MemoryPresence,
    Presence,
    PresenceUnavailable,
    RedisPresence,
    Seen,
    ViewerCounts,
    Viewers,
    gone_after,
)
from tests.conftest import REDIS_URL, unique

HEARTBEAT = 2.0
STORES = ["memory", *(["redis"] if REDIS_URL else [])]


@pytest.fixture(params=STORES)
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[Presence]:
    """Each presence store this run covers."""
    if request.param == "memory":
        yield MemoryPresence(HEARTBEAT)
        return
    assert REDIS_URL
    client = Redis.from_url(REDIS_URL)
    try:
        yield RedisPresence(client, HEARTBEAT, prefix=unique("test"))
    finally:
        await client.aclose()


async def counts(store: Presence, session_id: int, now: float) -> ViewerCounts:
    """Return one session's counts."""
    return (await store.counts([session_id], now))[session_id]


async def test_a_viewer_is_gone_after_two_missed_heartbeats(presence: Presence) -> None:
    """Seen at t=0: still counted through 2 intervals (+ slack), gone after."""
    start = 1_700_000_000.0
    await presence.touch({1: {"viewer-a": start}}, start)
    assert (await counts(presence, 1, start + HEARTBEAT)).current == 1
    assert (await counts(presence, 1, start + 2 * HEARTBEAT + 0.9)).current == 1
    assert (await counts(presence, 1, start + gone_after(HEARTBEAT) + 0.01)).current == 0


async def test_heartbeats_keep_a_viewer_and_one_viewer_counts_once(presence: Presence) -> None:
    """Regular heartbeats (and playlist requests with the same id) are one viewer."""
    start = 1_700_000_000.0
    for i in range(10):
        now = start + i * HEARTBEAT
        await presence.touch({1: {"viewer-a": now}}, now)
        await presence.touch({1: {"viewer-a": now + 0.5}}, now + 0.5)  # its playlist refresh
        assert (await counts(presence, 1, now + 1)).current == 1
    final = await counts(presence, 1, start + 10 * HEARTBEAT)
    assert final == ViewerCounts(1, 1, 1)


async def test_peak_and_unique_outlive_the_viewers(presence: Presence) -> None:
    """Three watch together, then two others one after another: peak 3, unique 5, current 1."""
    t = 1_700_000_000.0
    await presence.touch({5: {"a": t, "b": t, "c": t}}, t)
    assert await counts(presence, 5, t) == ViewerCounts(3, 3, 3)
    later = t + 10 * HEARTBEAT
    await presence.touch({5: {"d": later}}, later)
    evenlater = later + 10 * HEARTBEAT
    await presence.touch({5: {"e": evenlater}}, evenlater)
    assert await counts(presence, 5, evenlater) == ViewerCounts(1, 3, 5)


async def test_sessions_are_counted_apart(presence: Presence) -> None:
    """Each session has its own viewers; an unknown session has none."""
    t = 1_700_000_000.0
    await presence.touch({1: {"a": t}, 2: {"a": t, "b": t}}, t)
    result = await presence.counts([1, 2, 3], t)
    assert [result[s].current for s in (1, 2, 3)] == [1, 2, 0]


@pytest.mark.skipif(not REDIS_URL, reason="set STAGECAST_TEST_REDIS_URL")
async def test_processes_share_presence_through_redis() -> None:
    """Two processes (two clients, one prefix): a viewer seen by either is counted by both."""
    assert REDIS_URL
    prefix = unique("shared")
    first, second = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    try:
        one = RedisPresence(first, HEARTBEAT, prefix=prefix)
        two = RedisPresence(second, HEARTBEAT, prefix=prefix)
        t = 1_700_000_000.0
        await one.touch({9: {"a": t}}, t)
        await two.touch({9: {"b": t, "a": t + 1}}, t + 1)
        assert await counts(one, 9, t + 1) == ViewerCounts(2, 2, 2)
        assert await counts(two, 9, t + 1) == ViewerCounts(2, 2, 2)
    finally:
        await first.aclose()
        await second.aclose()


def test_unique_counts_are_exact_when_small_and_close_when_large() -> None:
    """HyperLogLog: exact for a handful, within 2 % for 50,000, and re-adding changes nothing."""
    small = HyperLogLog()
    for name in ["a", "b", "c", "a", "b"]:
        small.add(name)
    assert small.count() == 3
    large = HyperLogLog()
    for i in range(50_000):
        large.add(f"viewer-{i}")
        large.add(f"viewer-{i // 2}")
    assert large.count() == pytest.approx(50_000, rel=0.02)
    assert HyperLogLog().count() == 0


class Failing:
    """A presence store that is down; counts how often it is asked."""

    def __init__(self) -> None:
        self.calls = 0

    async def touch(self, seen: Seen, now: float) -> None:
        self.calls += 1
        raise PresenceUnavailable("down")

    async def counts(self, session_ids: Sequence[int], now: float) -> dict[int, ViewerCounts]:
        self.calls += 1
        raise PresenceUnavailable("down")

    async def forget(self, session_ids: Iterable[int]) -> None:
        return None


async def test_a_store_that_is_down_is_not_hammered() -> None:
    """While the store fails, ticks get the last counts and the store is left alone a while."""
    store = Failing()
    viewers = Viewers(store, heartbeat=HEARTBEAT)
    viewers.seen(1, "a")
    for _ in range(20):
        assert await viewers.counts([1]) == {1: ViewerCounts()}
    assert store.calls == 1  # the first failure starts a backoff (1 s, doubling)
    assert viewers.failures == 1


async def test_sightings_are_buffered_without_io_and_bounded() -> None:
    """Playlist observers only write to a bounded buffer; the tick flushes it."""
    store = MemoryPresence(HEARTBEAT)
    viewers = Viewers(store, heartbeat=HEARTBEAT, max_pending=3)
    for name in ["a", "b", "c", "d"]:
        viewers.on_view(ViewEvent(1, 1, name))
    viewers.on_view(ViewEvent(1, 1, "a"))  # already buffered: refreshed, not dropped
    assert viewers.dropped == 1
    # Buffered only: the store has seen nobody until the tick flushes.
    assert (await store.counts([1], viewers.clock()))[1].current == 0
    assert (await viewers.counts([1]))[1].current == 3
    assert viewers.last[1].current == 3
