"""Sliding-window rate limits, in memory or in Redis (so they hold across processes).

``hit(key, limit, window)`` records one event and returns None if it is within the limit,
or the seconds until the next event would be allowed. Refused events are not recorded, so a
client that keeps hammering is let back in as soon as its window has room.

``strike(key, window)`` counts failures (wrong passwords) for growing delays: the count and the
time of the last strike are kept until ``window`` seconds pass without one; ``strikes(key)``
reads them back. ``reset(key)`` forgets both kinds.

``address_bucket(host)`` is the key a client address is limited under: the address for IPv4,
its /64 for IPv6 (one host usually holds a whole /64).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict, deque
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from stagecast.errors import ServiceUnavailable

_REDIS_TIMEOUT = 1.0

# KEYS[1]: the window's sorted set. ARGV: now (ms), window (ms), limit, member.
_SLIDING_WINDOW = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, window)
return -1
"""

# KEYS[1]: the strike hash. ARGV: now (ms), window (ms). Returns the new count.
_STRIKE = """
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 't', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
"""


def address_bucket(host: str) -> str:
    """Return the key a client address is limited under (IPv6: its /64; else as given)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter(Protocol):
    """Count events per key in a sliding window."""

    async def hit(self, key: str, limit: int, window: float) -> float | None:
        """Record an event; return None if allowed, else the seconds to wait."""

    async def reset(self, key: str) -> None:
        """Forget every event and strike of ``key``."""

    async def strike(self, key: str, window: float) -> int:
        """Count a failure of ``key``; return the failures counted (kept ``window`` s)."""

    async def strikes(self, key: str) -> tuple[int, float]:
        """Return ``key``'s failure count and the seconds since the last (0, inf if none)."""


class MemoryRateLimiter:
    """A per-process limiter with a bounded number of keys (least recently used evicted)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._strikes: OrderedDict[str, tuple[int, float, float]] = OrderedDict()  # n, at, window
        self._max_keys = max_keys

    async def hit(self, key: str, limit: int, window: float) -> float | None:
        """Record an event for ``key`` unless ``limit`` were exceeded in the last ``window`` s."""
        now = time.monotonic()
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
            if len(self._events) > self._max_keys:
                self._events.popitem(last=False)
        self._events.move_to_end(key)
        while events and events[0] <= now - window:
            events.popleft()
        if len(events) >= limit:
            return max(events[0] + window - now, 0.001)
        events.append(now)
        return None

    async def reset(self, key: str) -> None:
        """Forget ``key``."""
        self._events.pop(key, None)
        self._strikes.pop(key, None)

    async def strike(self, key: str, window: float) -> int:
        """Count a failure of ``key``; the count lapses ``window`` s after the last one."""
        count, _ = await self.strikes(key)
        self._strikes[key] = (count + 1, time.monotonic(), window)
        self._strikes.move_to_end(key)
        if len(self._strikes) > self._max_keys:
            self._strikes.popitem(last=False)
        return count + 1

    async def strikes(self, key: str) -> tuple[int, float]:
        """Return ``key``'s failure count and the seconds since its last failure."""
        found = self._strikes.get(key)
        if found is None:
            return 0, float("inf")
        count, at, window = found
        age = time.monotonic() - at
        if age >= window:
            del self._strikes[key]
            return 0, float("inf")
        return count, age


class RedisRateLimiter:
    """A limiter shared by every process on the same Redis (one atomic script per hit)."""

    def __init__(self, client: Redis, *, prefix: str = "stagecast") -> None:
        self._client = client
        self._prefix = f"{prefix}:rl:"
        self._strike_prefix = f"{prefix}:strike:"
        self._script = client.register_script(_SLIDING_WINDOW)
        self._strike = client.register_script(_STRIKE)
        self._seq = 0

    async def hit(self, key: str, limit: int, window: float) -> float | None:
        """Record an event; raises ServiceUnavailable if Redis does not answer."""
        self._seq += 1
        now_ms = int(time.time() * 1000)
        member = f"{now_ms}-{id(self)}-{self._seq}"
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                wait_ms = await self._script(
                    keys=[self._prefix + key], args=[now_ms, int(window * 1000), limit, member]
                )
        except (RedisError, OSError, TimeoutError) as exc:
            raise ServiceUnavailable("rate limiter unavailable") from exc
        wait = int(wait_ms)
        return None if wait < 0 else max(wait / 1000, 0.001)

    async def reset(self, key: str) -> None:
        """Forget ``key``."""
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                await self._client.delete(self._prefix + key, self._strike_prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            raise ServiceUnavailable("rate limiter unavailable") from exc

    async def strike(self, key: str, window: float) -> int:
        """Count a failure of ``key`` (atomically); raises ServiceUnavailable without Redis."""
        now_ms = int(time.time() * 1000)
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                count = await self._strike(
                    keys=[self._strike_prefix + key], args=[now_ms, max(1, int(window * 1000))]
                )
        except (RedisError, OSError, TimeoutError) as exc:
            raise ServiceUnavailable("rate limiter unavailable") from exc
        return int(count)

    async def strikes(self, key: str) -> tuple[int, float]:
        """Return ``key``'s failure count and the seconds since its last failure."""
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                count, at = await self._client.hmget(self._strike_prefix + key, ["n", "t"])
        except (RedisError, OSError, TimeoutError) as exc:
            raise ServiceUnavailable("rate limiter unavailable") from exc
        if count is None or at is None:
            return 0, float("inf")
        return int(count), max(0.0, time.time() - int(at) / 1000)
