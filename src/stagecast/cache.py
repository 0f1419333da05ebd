"""A small async cache: bounded in entries and age, one computation per missing key.

Expired entries are evicted first, then the least recently used. A stored ``None`` is a value
like any other (an unknown slug is not looked up again within the ttl). Concurrent misses for
one key share a single computation (the others await its result). No lock is held across an
await: the loader runs as a task and waiters await that task.

``invalidate`` and ``clear`` also detach the loads in flight: those loads may have read before
the change, so they store nothing and later callers start a load of their own.
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
        # The one load each key may store from; invalidate() and clear() take it away.
        self._loading: dict[K, asyncio.Task[V]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _fresh(self, key: K) -> tuple[float, V] | None:
        """Return the unexpired entry of ``key`` (marked recently used), dropping an old one."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def peek(self, key: K) -> V | None:
        """Return the fresh value of ``key`` without loading (and mark it recently used)."""
        entry = self._fresh(key)
        return None if entry is None else entry[1]

    async def get(self, key: K, load: Callable[[], Awaitable[V]], *, fresh: bool = False) -> V:
        """Return the cached value of ``key``, loading it once if missing or expired.

        ``fresh`` skips a stored value but still shares a load already in flight. Errors from
        ``load`` reach every waiter and nothing is cached.
        """
        entry = None if fresh else self._fresh(key)
        if entry is not None:
            self.hits += 1
            return entry[1]
        self.misses += 1
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._loading[key] = task
            task.add_done_callback(lambda done: self._loaded(key, done))
        return await asyncio.shield(task)

    def _loaded(self, key: K, task: asyncio.Task[V]) -> None:
        # Asking for the exception also marks it retrieved when every waiter has gone.
        failed = task.cancelled() or task.exception() is not None
        if self._loading.get(key) is not task:
            return  # detached by invalidate() or clear(): the value may predate the change
        del self._loading[key]
        if not failed:
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
        """Forget ``key``; a load already in flight neither stores nor serves later callers."""
        self._entries.pop(key, None)
        self._loading.pop(key, None)

    def clear(self) -> None:
        """Forget every key and detach every load in flight (see ``invalidate``)."""
        self._entries.clear()
        self._loading.clear()

    def _evict_expired(self) -> None:
        now = self._clock()
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
