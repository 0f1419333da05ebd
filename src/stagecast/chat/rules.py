"""This process's cache of each channel's chat rules and of who is banned or timed out.

The database holds the truth; every change is announced on the bus topic ``TOPIC`` and every
process drops the entries it names (a ``Gap`` on that topic drops everything). Entries also
expire after ``ttl`` seconds, a backstop should an announcement be lost. A load that overlaps
an invalidation is not stored, so a stale read cannot outlive the change that made it stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.bus.topics import Topic
from stagecast.cache import TtlCache
from stagecast.chat.errors import Banned, TimedOut
from stagecast.chat.filters import FilterRule, FilterSet
from stagecast.chat.models import chat_channel, chat_filter, chat_restriction
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.errors import StagecastError


@dataclass(frozen=True)
class Announcement:
    """A moderation change, for every process's cache and sockets (published after commit).

    ``account_id`` None: the channel's rules changed (``slow_mode`` is set when slow mode did,
    in seconds); otherwise that account was banned (``banned``), timed out until ``until``, or
    released (neither).
    """

    channel_id: int
    account_id: int | None = None
    banned: bool = False
    until: datetime | None = None
    slow_mode: int | None = None


# ``chat.moderation``: one topic for every channel.
TOPIC: Topic[Announcement] = Topic("chat.moderation", Announcement)


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


class Rules:
    """Cached reads of channel rules and restrictions, dropped on announcement."""

    def __init__(
        self, db: Database, *, ttl: float = 30.0, max_channels: int = 2000, max_users: int = 50_000
    ) -> None:
        self._db = db
        # Concurrent misses share one read (a thousand sockets joining at once: one query).
        self._channels: TtlCache[int, ChannelRules] = TtlCache(max_entries=max_channels, ttl=ttl)
        self._restrictions: TtlCache[tuple[int, int], Restriction | None] = TtlCache(
            max_entries=max_users, ttl=ttl
        )

    async def channel(self, channel_id: int) -> ChannelRules:
        """Return the rules of ``channel_id`` (defaults if it never changed any)."""
        return await self._channels.get(channel_id, lambda: _read_rules(self._db, channel_id))

    async def restriction(self, channel_id: int, account_id: int) -> Restriction | None:
        """Return the ban or live timeout of ``account_id`` in the channel, if any."""
        value = await self._restrictions.get(
            (channel_id, account_id),
            lambda: _read_restriction(self._db, channel_id, account_id),
        )
        if value is not None and value.error() is None:
            return None
        return value

    def invalidate(self, channel_id: int, account_id: int | None = None) -> None:
        """Forget the channel's rules, or one account's restriction in it."""
        if account_id is None:
            self._channels.invalidate(channel_id)
        else:
            self._restrictions.invalidate((channel_id, account_id))

    def clear(self) -> None:
        """Forget everything (an announcement may have been lost)."""
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
