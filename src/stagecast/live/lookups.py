"""This process's one cache of slug → channel and active session, and who may watch a channel.

Every viewer-facing request (playlists, the viewer feed, heartbeats) asks here instead of the
database: one query a second per slug at most, an unknown slug included (cached as None), and
none for a string no channel can have. ``follow`` keeps it current over the bus: a session
that starts, goes live or ends anywhere, or an edit of the channel (its visibility), drops its
slug here at once (the next request reads it again); a gap in the bus drops everything. The
one-second expiry stays as the backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from stagecast.auth.service import Account
from stagecast.bus import Bus, Gap
from stagecast.cache import TtlCache
from stagecast.channels.policy import Access, Action, allowed, can_view, with_token
from stagecast.channels.service import CHANNEL_CHANGED_TOPIC, SLUG_RE, access_to
from stagecast.channels.tokens import channel_target
from stagecast.db import Database
from stagecast.errors import NotFound
from stagecast.live import service
from stagecast.live.service import ChannelLive
from stagecast.live.states import CHANGES_TOPIC

log = logging.getLogger(__name__)

LOOKUP_TTL = 1.0  # seconds a slug's channel and active session are cached
# Seconds past that a known slug is still answered from memory while the database is reread
# (or does not answer): a database stall does not stall the playlists of a channel.
LOOKUP_STALE = 30.0


class Lookups:
    """Per-process cache of slug → channel and active session, so polling is cheap.

    An unknown slug is cached too (as None): probing slugs costs one query a second each.
    A slug seen in the last ``LOOKUP_STALE`` seconds never waits for the database.
    """

    def __init__(self, db: Database, secret_key: str) -> None:
        self._db = db
        self.secret_key = secret_key
        self.cache: TtlCache[str, ChannelLive | None] = TtlCache(
            max_entries=10_000, ttl=LOOKUP_TTL, stale=LOOKUP_STALE
        )

    async def follow(self, bus: Bus) -> asyncio.Task[None]:
        """Subscribe to every channel's session changes and edits; return the task applying them."""
        sessions = await CHANGES_TOPIC.subscribe(bus, maxsize=4096)
        edits = await CHANNEL_CHANGED_TOPIC.subscribe(bus, maxsize=1024)

        async def apply_sessions() -> None:
            async with sessions:
                while (message := await sessions.get()) is not None:
                    if isinstance(message, Gap):
                        self.cache.clear()
                        continue
                    with contextlib.suppress(ValueError):  # not one of ours: ignored
                        changed = CHANGES_TOPIC.decode(message)
                        if changed.slug:
                            self.cache.invalidate(changed.slug)
                        else:
                            self.cache.clear()  # an end found by id only: which slug is unknown

        async def apply_edits() -> None:
            async with edits:
                while (message := await edits.get()) is not None:
                    if isinstance(message, Gap):
                        self.cache.clear()
                        continue
                    with contextlib.suppress(ValueError):
                        self.cache.invalidate(CHANNEL_CHANGED_TOPIC.decode(message).slug)

        async def apply() -> None:
            await asyncio.gather(apply_sessions(), apply_edits())

        return asyncio.create_task(apply(), name="live-lookups")

    async def channel(self, slug: str, *, fresh: bool = False) -> ChannelLive | None:
        """Return the channel ``slug`` and its active session, or None if there is none.

        ``fresh`` skips the cached value; concurrent misses share one query (a hundred feeds
        resynchronising after a bus gap read the database once).
        """
        if not SLUG_RE.fullmatch(slug):
            return None  # no channel can have it (a NUL, upper case, too long): no query
        return await self.cache.get(slug, lambda: service.channel_live(self._db, slug), fresh=fresh)

    async def watchable(
        self,
        slug: str,
        token: str | None,
        account: Account | None,
        *,
        identify: Callable[[], Awaitable[Account | None]] | None = None,
    ) -> ChannelLive:
        """Return the channel ``slug`` if the caller may watch it; else NotFound (unknown too).

        Public and unlisted channels are open; private ones need a playback token bound to the
        channel or a staff account (see ``channels.policy.can_view``). ``identify`` finds the
        caller's account when ``account`` is None and the channel is not open without one (the
        media fast path looks up a session cookie only then).
        """
        found = await self.channel(slug)
        if found is None:
            raise NotFound("channel not found")
        known = Access(found.channel_id, found.owner_id, found.visibility, account)
        if token is not None:  # most viewers of public channels come without one
            known = with_token(known, self.secret_key, token, channel_target(found.channel_id))
        if account is None and identify is not None and not allowed(known, Action.VIEW):
            account = await identify()
            known = replace(known, account=account)

        async def standing() -> Access:
            _, access = await access_to(self._db, found.slug, account)
            return access

        await can_view(known, standing if account is not None else None, what="channel")
        return found
