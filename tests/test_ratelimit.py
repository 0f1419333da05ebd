"""Sliding-window rate limits, in memory and in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stagecast import ratelimit
from stagecast.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from tests.conftest import BUSES, REDIS_URL, unique


@pytest.fixture(params=BUSES)
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    """Each limiter implementation this run covers."""
    if request.param == "memory":
        yield MemoryRateLimiter()
        return
    assert REDIS_URL
    client = Redis.from_url(REDIS_URL)
    yield RedisRateLimiter(client, prefix=unique("test"))
    await client.aclose()


async def test_allows_up_to_the_limit_then_says_how_long_to_wait(limiter: RateLimiter) -> None:
    """The first N hits pass; the next is refused with a wait within the window."""
    for _ in range(3):
        assert await limiter.hit("k", 3, 10.0) is None
    wait = await limiter.hit("k", 3, 10.0)
    assert wait is not None
    assert 0 < wait <= 10.0


async def test_keys_are_independent_and_reset_clears(limiter: RateLimiter) -> None:
    """One key's events do not count against another; reset forgets a key."""
    assert await limiter.hit("a", 1, 10.0) is None
    assert await limiter.hit("b", 1, 10.0) is None
    assert await limiter.hit("a", 1, 10.0) is not None
    await limiter.reset("a")
    assert await limiter.hit("a", 1, 10.0) is None


class Clock:
    """Stands in for the ``time`` module in ``stagecast.ratelimit``: time moves when told."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def monotonic(self) -> float:
        """Return the fake monotonic time (seconds)."""
        return self.now

    def time(self) -> float:
        """Return the fake wall time (seconds)."""
        return self.now


async def test_window_slides(limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal's wait is exact: just before it still refused, just after it allowed again."""
    clock = Clock()
    monkeypatch.setattr(ratelimit, "time", clock)
    assert await limiter.hit("w", 1, 10.0) is None
    clock.now += 4.0
    wait = await limiter.hit("w", 1, 10.0)
    assert wait == pytest.approx(6.0, abs=0.002)
    clock.now += wait - 0.01
    assert await limiter.hit("w", 1, 10.0) is not None
    clock.now += 0.02
    assert await limiter.hit("w", 1, 10.0) is None


async def test_memory_limiter_is_bounded() -> None:
    """The in-memory limiter forgets the least recently used keys past its bound."""
    limiter = MemoryRateLimiter(max_keys=10)
    for i in range(100):
        await limiter.hit(f"k{i}", 1, 60)
    assert len(limiter._events) <= 10
