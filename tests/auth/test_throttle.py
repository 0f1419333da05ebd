"""The sign-in throttle's pieces: strikes in memory and in Redis, the growing delay, buckets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stagecast import ratelimit
from stagecast.auth.throttle import SignInThrottle
from stagecast.ratelimit import (
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    address_bucket,
)
from tests.conftest import BUSES, REDIS_URL, make_settings, unique
from tests.test_ratelimit import Clock


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


async def test_strikes_count_up_and_lapse_after_a_quiet_window(
    limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each strike adds one and restarts the window; a window without one forgets them all."""
    clock = Clock()
    monkeypatch.setattr(ratelimit, "time", clock)
    assert await limiter.strikes("u") == (0, float("inf"))
    assert await limiter.strike("u", 10.0) == 1
    clock.now += 6.0
    assert await limiter.strike("u", 10.0) == 2
    clock.now += 6.0  # 12 s after the first, 6 s after the last: still counted
    count, since = await limiter.strikes("u")
    assert count == 2
    assert since == pytest.approx(6.0, abs=0.01)
    if isinstance(limiter, MemoryRateLimiter):  # Redis expires the key on its own clock
        clock.now += 5.0
        assert await limiter.strikes("u") == (0, float("inf"))


async def test_reset_forgets_strikes_too(limiter: RateLimiter) -> None:
    """After reset a key has neither events nor strikes."""
    await limiter.strike("r", 10.0)
    await limiter.hit("r", 1, 10.0)
    await limiter.reset("r")
    assert await limiter.strikes("r") == (0, float("inf"))
    assert await limiter.hit("r", 1, 10.0) is None


def test_the_delay_doubles_past_the_free_failures_up_to_the_window(tmp_path: Path) -> None:
    """No delay within ``login_attempts`` failures; then 1, 2, 4 … s, capped at the window."""
    throttle = SignInThrottle(MemoryRateLimiter(), make_settings(tmp_path))
    assert [throttle.delay(n) for n in (0, 9)] == [0.0, 0.0]
    assert [throttle.delay(n) for n in (10, 11, 12, 13)] == [1.0, 2.0, 4.0, 8.0]
    assert throttle.delay(19) == 300.0
    assert throttle.delay(10_000) == 300.0


def test_addresses_are_bucketed_by_host_and_ipv6_slash_64() -> None:
    """IPv4 as is; IPv6 by /64 (one host holds a whole /64); mapped IPv4 as IPv4."""
    assert address_bucket("203.0.113.9") == "203.0.113.9"
    assert address_bucket("2001:db8:1:2:aaaa::1") == address_bucket("2001:db8:1:2:ffff::9")
    assert address_bucket("2001:db8:1:2::1") != address_bucket("2001:db8:1:3::1")
    assert address_bucket("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_bucket("unknown") == "unknown"
