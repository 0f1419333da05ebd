"""A small async cache: bounded in entries and age, one computation per missing key.

Expired entries are evicted first, then the least recently used. Concurrent misses for one key
share a single computation (the others await its result). No lock is held across an await:
the loader runs as a task and waiters await that task.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Cache values for ``ttl`` seconds, at most ``max_entries`` of them."""

    def __init__(
        self, *, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("max_entries must be >= 1 and ttl > 0")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Task[V]] = {}
        # Bumped by invalidate(): a load that started before it must not store its result.
        self._generation: dict[K, int] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: K) -> V | None:
        """Return the fresh value of ``key`` without loading (and mark it recently used)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """Return the cached value of ``key``, loading it once if missing or expired.

        Errors from ``load`` reach every waiter and nothing is cached.
        """
        value = self.peek(key)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._loading[key] = task
            generation = self._generation.get(key, 0)
            task.add_done_callback(lambda done: self._loaded(key, done, generation))
        return await asyncio.shield(task)

    def _loaded(self, key: K, task: asyncio.Task[V], generation: int) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        stale = self._generation.get(key, 0) != generation
        if key not in self._loading:
            self._generation.pop(key, None)  # nothing in flight: the count can start over
        if task.cancelled() or task.exception() is not None or stale:
            return  # a stale value (invalidated while loading) may predate the change
        self.put(key, task.result())

    def put(self, key: K, value: V) -> None:
        """Store ``value`` for ``key``, evicting expired entries first, then the oldest used."""
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._evict_expired()
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, key: K) -> None:
        """Forget ``key``; a load already in flight will not store its (possibly stale) value."""
        self._entries.pop(key, None)
        if key in self._loading:
            self._generation[key] = self._generation.get(key, 0) + 1
        else:
            self._generation.pop(key, None)

    def _evict_expired(self) -> None:
        now = self._clock()
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
