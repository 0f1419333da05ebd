"""Sliding-window rate limits, in memory and in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

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


async def test_window_slides(limiter: RateLimiter) -> None:
    """Once the window has passed, events are allowed again."""
    assert await limiter.hit("w", 1, 0.2) is None
    wait = await limiter.hit("w", 1, 0.2)
    assert wait is not None
    import asyncio

    await asyncio.sleep(wait + 0.05)
    assert await limiter.hit("w", 1, 0.2) is None


async def test_memory_limiter_is_bounded() -> None:
    """The in-memory limiter forgets the least recently used keys past its bound."""
    limiter = MemoryRateLimiter(max_keys=10)
    for i in range(100):
        await limiter.hit(f"k{i}", 1, 60)
    assert len(limiter._events) <= 10
