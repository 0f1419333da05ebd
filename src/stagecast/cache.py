"""A small async cache: bounded in entries and age, one computation per missing key.

Expired entries are evicted first, then the least recently used. A stored ``None`` is a value
like any other (an unknown slug is not looked up again within the ttl). Concurrent misses for
one key share a single computation (the others await its result). No lock is held across an
await: the loader runs as a task and waiters await that task.

``invalidate`` and ``clear`` also detach the loads in flight: those loads may have read before
the change, so they store nothing and later callers start a load of their own.

With ``stale`` > 0 an expired value is kept for up to ``stale`` seconds past its ttl: a get
waits at most ``patience`` seconds for the (one, shared) reload, and if that reload fails or is
slower, gets the old value while the reload goes on (stale-if-error). A caller then never
waits long on the loader for a key seen recently, so a database stall delays nothing on a hot
path, while a fast reload still answers fresh; after ``stale`` seconds without a successful
reload, errors reach the caller again.
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
        self,
        *,
        max_entries: int,
        ttl: float,
        stale: float = 0.0,
        patience: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or ttl <= 0 or stale < 0 or patience < 0:
            raise ValueError("max_entries must be >= 1, ttl > 0, stale and patience >= 0")
        self.max_entries = max_entries
        self.ttl = ttl
        self.stale = stale
        self.patience = patience
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        # The one load each key may store from; invalidate() and clear() take it away.
        self._loading: dict[K, asyncio.Task[V]] = {}
        self.hits = 0
        self.misses = 0
        self.stale_served = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _fresh(self, key: K) -> tuple[float, V] | None:
        """Return the unexpired entry of ``key`` (marked recently used), dropping an old one."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            if entry[0] + self.stale <= self._clock():
                del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def _stale(self, key: K) -> tuple[float, V] | None:
        """Return the expired entry of ``key`` if it may still be served (see ``stale``)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] + self.stale <= self._clock():
            return None
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
        old = None if fresh else self._stale(key)
        if old is None:
            return await asyncio.shield(task)
        await asyncio.wait((task,), timeout=self.patience)
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        self.stale_served += 1
        return old[1]  # the reload (if still running) goes on in the background

    def _loaded(self, key: K, task: asyncio.Task[V]) -> None:
        # Asking for the exception also marks it retrieved when every waiter has gone.
        failed = task.cancelled() or task.exception() is not None
        if self._loading.get(key) is not task:
            return  # detached by invalidate() or clear(): the value may predate the change
        del self._loading[key]
        if not failed:
            self.put(key, task.result())
        # A failed reload leaves a stale entry as it was: it is served until it is too old.

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
        now = self._clock() - self.stale
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
