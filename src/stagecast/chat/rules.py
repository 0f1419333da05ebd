"""This process's cache of each channel's chat rules and of who is banned or timed out.

The database holds the truth; every change is announced on the bus topic ``TOPIC`` and every
process drops the entries it names (a ``Gap`` on that topic drops everything). Entries also
expire after ``ttl`` seconds, a backstop should an announcement be lost. A load that overlaps
an invalidation is not stored, so a stale read cannot outlive the change that made it stale.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.chat.errors import Banned, TimedOut
from stagecast.chat.filters import FilterRule, FilterSet
from stagecast.chat.models import chat_channel, chat_filter, chat_restriction
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.errors import StagecastError

TOPIC = "chat.moderation"

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class ChannelRules:
    """A channel's chat settings and compiled filters."""

    slow_mode_seconds: int = 0
    anonymous_read: bool = True
    filters: FilterSet = field(default_factory=lambda: FilterSet([]))


@dataclass(frozen=True)
class Restriction:
    """A ban (``expires_at`` None) or a timeout until ``expires_at``."""

    expires_at: datetime | None
    reason: str = ""

    @property
    def banned(self) -> bool:
        """Tell whether this is a ban rather than a timeout."""
        return self.expires_at is None

    def error(self) -> StagecastError | None:
        """Return the error a post meets now (Banned, TimedOut), or None once it has expired."""
        if self.expires_at is None:
            return Banned("you are banned from this chat")
        remaining = (self.expires_at - utcnow()).total_seconds()
        if remaining <= 0:
            return None
        return TimedOut("you are timed out in this chat", retry_after=remaining)


class _Cache(Generic[K, V]):
    """Entries with an age limit and a size limit (least recently used evicted)."""

    def __init__(self, max_entries: int, ttl: float) -> None:
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl

    def get(self, key: K) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (time.monotonic() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, match: Callable[[K], bool]) -> None:
        for key in [k for k in self._entries if match(k)]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


class Rules:
    """Cached reads of channel rules and restrictions, dropped on announcement."""

    def __init__(
        self, db: Database, *, ttl: float = 30.0, max_channels: int = 2000, max_users: int = 50_000
    ) -> None:
        self._db = db
        self._channels: _Cache[int, ChannelRules] = _Cache(max_channels, ttl)
        self._restrictions: _Cache[tuple[int, int], Restriction | None] = _Cache(max_users, ttl)
        self._generation = 0
        self._inflight: dict[Hashable, asyncio.Task[Any]] = {}
        self.loads = 0

    async def channel(self, channel_id: int) -> ChannelRules:
        """Return the rules of ``channel_id`` (defaults if it never changed any)."""
        found, value = self._channels.get(channel_id)
        if found and value is not None:
            return value
        return await self._load(
            ("rules", channel_id),
            lambda: _read_rules(self._db, channel_id),
            lambda rules: self._channels.put(channel_id, rules),
        )

    async def restriction(self, channel_id: int, account_id: int) -> Restriction | None:
        """Return the ban or live timeout of ``account_id`` in the channel, if any."""
        key = (channel_id, account_id)
        found, value = self._restrictions.get(key)
        if not found:
            value = await self._load(
                ("restriction", key),
                lambda: _read_restriction(self._db, channel_id, account_id),
                lambda r: self._restrictions.put(key, r),
            )
        if value is not None and value.error() is None:
            return None
        return value

    async def _load(
        self, key: Hashable, read: Callable[[], Awaitable[V]], store: Callable[[V], None]
    ) -> V:
        """Read once for every concurrent caller (a thousand sockets joining at once share
        one query); store the value unless an invalidation happened meanwhile."""
        task = self._inflight.get(key)
        if task is None:
            generation = self._generation

            async def load() -> Any:
                value = await read()
                self.loads += 1
                if generation == self._generation:
                    store(value)
                return value

            task = asyncio.ensure_future(load())
            self._inflight[key] = task
            task.add_done_callback(
                lambda done: self._inflight.pop(key) if self._inflight.get(key) is done else None
            )
        return cast(V, await asyncio.shield(task))

    def invalidate(self, channel_id: int, account_id: int | None = None) -> None:
        """Forget the channel's rules, or one account's restriction in it."""
        self._generation += 1
        self._inflight.clear()  # a read in flight may predate the change: do not share it
        if account_id is None:
            self._channels.drop(lambda key: key == channel_id)
        else:
            self._restrictions.drop(lambda key: key == (channel_id, account_id))

    def clear(self) -> None:
        """Forget everything (an announcement may have been lost)."""
        self._generation += 1
        self._inflight.clear()
        self._channels.clear()
        self._restrictions.clear()


async def _read_rules(db: Database, channel_id: int) -> ChannelRules:
    async def unit(conn: AsyncConnection) -> tuple[tuple[int, bool] | None, list[FilterRule]]:
        row = (
            await conn.execute(
                select(chat_channel.c.slow_mode_seconds, chat_channel.c.anonymous_read).where(
                    chat_channel.c.channel_id == channel_id
                )
            )
        ).one_or_none()
        filters = await load_filters(conn, channel_id)
        return ((int(row[0]), bool(row[1])) if row is not None else None), filters

    settings, filters = await db.run(unit, kind=Kind.READ, name="chat_rules")
    slow, anonymous = settings if settings is not None else (0, True)
    return ChannelRules(slow, anonymous, FilterSet(filters))


async def load_filters(conn: AsyncConnection, channel_id: int) -> list[FilterRule]:
    """Return the channel's filters, oldest first."""
    rows = await conn.execute(
        select(chat_filter.c.id, chat_filter.c.kind, chat_filter.c.pattern, chat_filter.c.action)
        .where(chat_filter.c.channel_id == channel_id)
        .order_by(chat_filter.c.id)
    )
    return [FilterRule(int(r.id), r.kind, r.pattern, r.action) for r in rows]


async def _read_restriction(db: Database, channel_id: int, account_id: int) -> Restriction | None:
    async def unit(conn: AsyncConnection) -> Restriction | None:
        row = (
            await conn.execute(
                select(chat_restriction.c.expires_at, chat_restriction.c.reason).where(
                    chat_restriction.c.channel_id == channel_id,
                    chat_restriction.c.account_id == account_id,
                )
            )
        ).one_or_none()
        return Restriction(row.expires_at, row.reason) if row is not None else None

    return await db.run(unit, kind=Kind.READ, name="chat_restriction")
