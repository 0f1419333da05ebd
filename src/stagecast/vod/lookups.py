"""This process's memory of what VOD playback needs: each VOD's facts and its playlists.

A player asks for a VOD's playlists, init and media segments and its thumbnail; each request
needs the VOD's facts (status, visibility, channel, session, thumbnail) to authorize and to
build the path. They come from here, not from the database:

- facts: one cache per process (``TtlCache``) of VOD id → ``Vod`` or None (unknown or
  deleted ids are cached too, so a flood of made-up ids costs one query per id per
  ``FACTS_TTL``). A change publishes ``VodChanged`` on ``vods.changed`` after its commit (the
  writer also drops its own entry at once), and every process drops that id on receipt; after a
  bus gap every process drops every id. ``FACTS_TTL`` is the backstop while the bus is away,
  and bounds how long a channel's visibility change takes to reach the VODs that inherit it
  (channels announce no such change). A VOD seen within ``FACTS_STALE`` seconds keeps playing
  while the database does not answer (stale-if-error, see ``TtlCache``).
- playlists: a VOD's playlists are written once by its build, before it is ready, and never
  change; each is read from storage and hashed once (``Rendered``: bytes and a strong ETag),
  then kept for ``PLAYLIST_TTL`` seconds, at most ``PLAYLIST_ENTRIES`` of them (least
  recently used out first). They are only looked at once the facts say the VOD is ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from enum import Enum
from urllib.parse import quote

from stagecast.bus import Bus, BusUnavailable, Gap, Subscription
from stagecast.bus.base import Payload
from stagecast.cache import TtlCache
from stagecast.channels import tokens
from stagecast.channels.service import CHANNEL_CHANGED_TOPIC
from stagecast.db import Database
from stagecast.errors import NotFound
from stagecast.live.playlists import Rendered
from stagecast.live.storage import SegmentStorage, StorageError
from stagecast.vod import service
from stagecast.vod.events import VOD_CHANGED_TOPIC, VodChanged
from stagecast.vod.library import Vod

log = logging.getLogger(__name__)

FACTS_TTL = 5.0  # seconds a VOD's facts are used without asking the database again
FACTS_STALE = 60.0  # seconds past that they are still served while the database is away
FACTS_ENTRIES = 10_000
PLAYLIST_TTL = 600.0  # seconds a rendered playlist is kept (they never change)
# A rendition playlist lists about 30 bytes per 2 s segment: a 4-hour VOD's is about 220 KB.
PLAYLIST_ENTRIES = 512
SIGNED_SECONDS = 6 * 3600.0  # a signed media URL opens its file this long (a long VOD plays)


class Links(Enum):
    """Where the media URIs of a VOD playlist point."""

    HERE = "here"  # relative: this server serves the files
    BASE = "base"  # STAGECAST_MEDIA_BASE_URL + the file's key (a CDN, the bucket's endpoint)
    SIGNED = "signed"  # presigned, expiring URLs of the bucket (private VODs)


class Lookups:
    """Per-process cache of VOD facts and rendered playlists, kept current over the bus."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        storage: SegmentStorage,
        *,
        facts_ttl: float = FACTS_TTL,
        clock: Callable[[], float] = time.monotonic,
        media_base_url: str | None = None,
    ) -> None:
        self._db = db
        self._bus = bus
        self._storage = storage
        self.facts: TtlCache[int, Vod | None] = TtlCache(
            max_entries=FACTS_ENTRIES, ttl=facts_ttl, stale=FACTS_STALE, clock=clock
        )
        self.playlists: TtlCache[str, Rendered] = TtlCache(
            max_entries=PLAYLIST_ENTRIES, ttl=PLAYLIST_TTL, clock=clock
        )
        # Where VOD media is fetched from, when not here (STAGECAST_MEDIA_BASE_URL).
        self.media_base_url = media_base_url.rstrip("/") if media_base_url else None
        self.signs_urls = storage.signs_urls
        self.signed: TtlCache[str, Rendered] = TtlCache(
            max_entries=PLAYLIST_ENTRIES, ttl=SIGNED_SECONDS / 4, clock=clock
        )
        self._task: asyncio.Task[None] | None = None

    async def vod(self, vod_id: int) -> Vod | None:
        """Return VOD ``vod_id`` (no access check), or None if there is none or it is deleted.

        Raises the database's errors only for an id not seen within ``FACTS_STALE`` seconds.
        """
        return await self.facts.get(vod_id, lambda: service.find(self._db, vod_id))

    async def playlist(self, path: str, links: Links = Links.HERE) -> Rendered:
        """Return the playlist stored at ``path``, rendered once. Raises NotFound.

        ``links`` says where its media URIs point (see ``Links``): the forms are kept apart,
        a signed one only for a fraction of its signatures' lifetime.
        """

        async def load() -> Rendered:
            try:
                return Rendered.of((await self._storage.read(path)).decode())
            except (FileNotFoundError, StorageError, UnicodeDecodeError) as exc:
                raise NotFound("not found") from exc

        stored = await self.playlists.get(path, load)
        if links is Links.HERE or self.media_base_url is None:
            return stored
        if links is Links.BASE:
            return await self.playlists.get(
                f"{path}#base", lambda: self._linked(path, stored, signed=False)
            )
        return await self.signed.get(path, lambda: self._linked(path, stored, signed=True))

    async def _linked(self, path: str, stored: Rendered, *, signed: bool) -> Rendered:
        folder = path.rsplit("/", 1)[0]
        base = self.media_base_url

        def change(uri: str) -> str:
            if "://" in uri or uri.endswith(".m3u8") or "/" in uri:
                return uri  # not a media file beside the playlist
            target = f"{folder}/{uri}"
            if signed:
                return self._storage.signed_url(target, expires=SIGNED_SECONDS) or uri
            return f"{base}/{quote(self._storage.key(target))}"

        return Rendered.of(tokens.rewrite_uris(stored.text, change))

    async def announce(self, change: VodChanged) -> None:
        """Drop VOD ``change.vod_id`` here at once, then tell every process (after commit).

        A bus that is away is logged, not raised: the change has committed, and the other
        processes see it within ``FACTS_TTL``.
        """
        self.facts.invalidate(change.vod_id)
        try:
            await VOD_CHANGED_TOPIC.publish(self._bus, change)
        except BusUnavailable:
            log.warning("vod %d: could not announce %s on the bus", change.vod_id, change.change)

    def apply(self, item: Payload | Gap) -> None:
        """Act on one message of ``vods.changed``: drop its VOD, or every VOD after a gap."""
        if isinstance(item, Gap):
            self.facts.clear()
            return
        try:
            change = VOD_CHANGED_TOPIC.decode(item)
        except ValueError:
            log.warning("vod lookups: ignored a malformed vods.changed message")
            return
        self.facts.invalidate(change.vod_id)

    async def start(self) -> None:
        """Follow ``vods.changed`` and channel edits (subscribed once this returns) until
        ``close``. A channel's edit (its visibility, which its VODs may inherit) drops every
        VOD's facts: edits are rare, and the facts are read again on the next request."""
        subscription = await VOD_CHANGED_TOPIC.subscribe(self._bus, maxsize=1024)
        edits = await CHANNEL_CHANGED_TOPIC.subscribe(self._bus, maxsize=1024)
        self._task = asyncio.create_task(self._follow(subscription, edits), name="vod-lookups")

    async def close(self) -> None:
        """Stop following the bus."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _follow(self, subscription: Subscription, edits: Subscription) -> None:
        async def channel_edits() -> None:
            async with edits:
                while await edits.get() is not None:
                    self.facts.clear()

        async def vod_changes() -> None:
            async with subscription:
                while True:
                    item = await subscription.get()
                    if item is not None:
                        self.apply(item)

        await asyncio.gather(vod_changes(), channel_edits())
