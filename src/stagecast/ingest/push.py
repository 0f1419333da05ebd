"""HTTP pushers' sessions: one per channel, opened by the first request, let go when quiet.

Once a pusher is live, its later requests are checked against the key that opened the session
(in memory, constant time) instead of the database, so a database stall mid-stream does not
refuse segments. A rotation cuts the pusher off, and its next request is checked afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from dataclasses import dataclass, field

from stagecast.channels.service import KeyMatch
from stagecast.errors import StagecastError
from stagecast.live.fmp4 import MediaError, parse_init, parse_segment
from stagecast.live.manager import LiveManager
from stagecast.live.service import AlreadyLive
from stagecast.live.session import LiveSession


class AlreadyLiveError(StagecastError):
    """The channel is live from another encoder."""

    status = 409
    code = "already_live"


@dataclass
class _Pusher:
    session: LiveSession
    match: KeyMatch
    key: str
    last_put: float = field(default_factory=time.monotonic)
    inits: set[str] = field(default_factory=set)
    watchdog: asyncio.Task[None] | None = None
    kicked_event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def kicked(self) -> bool:
        """Tell whether the session let this pusher go (key rotated, stream ended)."""
        return self.kicked_event.is_set()


class HttpPushIngest:
    """Sessions fed by HTTP pushers, with an inactivity watchdog per channel."""

    def __init__(self, manager: LiveManager, *, idle_after: float) -> None:
        self._manager = manager
        self._idle_after = idle_after
        self._pushers: dict[int, _Pusher] = {}  # by channel id
        self._channels: dict[str, int] = {}  # slug → channel id, of the pushers above
        self._starting: dict[int, asyncio.Lock] = {}  # per channel, while its session opens

    def known(self, slug: str, key: str) -> KeyMatch | None:
        """Return the match of the live pusher of ``slug`` if ``key`` is the one it uses (O(1))."""
        channel_id = self._channels.get(slug)
        pusher = self._live(channel_id) if channel_id is not None else None
        if pusher is None or not hmac.compare_digest(pusher.key.encode(), key.encode()):
            return None
        return pusher.match

    async def session_for(self, match: KeyMatch, key: str) -> _Pusher:
        """Return the channel's pusher state, acquiring the session on the first request.

        Only requests of the same channel wait for each other while its session opens.
        """
        pusher = self._live(match.channel_id)
        if pusher is not None:
            return pusher
        async with self._starting.setdefault(match.channel_id, asyncio.Lock()):
            return self._live(match.channel_id) or await self._open(match, key)

    def check_opening(self, channel_id: int, rendition: str, data: bytes, *, is_init: bool) -> None:
        """Raise MediaError if ``data`` could not start (or resume) the channel's session.

        Only a request that would open a session is checked (a live pusher's media is its
        session's business): an init segment must parse, and a media segment needs the init
        this process still holds for ``rendition`` in the session it would resume, and must
        parse against it. Bytes that could never play thus leave no session behind.
        """
        pusher = self._pushers.get(channel_id)
        if pusher is not None and not pusher.kicked and not pusher.session.ended:
            return
        if is_init:
            parse_init(data)
            return
        session = self._manager.local(channel_id)
        held = session.renditions.get(rendition) if session and not session.ended else None
        if held is None or held.init is None:
            raise MediaError("send the init segment first")
        parse_segment(data, held.init)

    def _live(self, channel_id: int) -> _Pusher | None:
        pusher = self._pushers.get(channel_id)
        if pusher is None or pusher.kicked or pusher.session.ended:
            return None
        pusher.last_put = time.monotonic()
        return pusher

    async def _open(self, match: KeyMatch, key: str) -> _Pusher:
        kicked = asyncio.Event()

        async def kick(reason: str) -> None:
            kicked.set()

        try:
            session = await self._manager.acquire(match, kick)
        except AlreadyLive as exc:
            raise AlreadyLiveError("the channel is already live from another encoder") from exc
        holder = _Pusher(session, match, key, kicked_event=kicked)
        holder.watchdog = asyncio.create_task(self._watch(match.channel_id, holder))
        self._pushers[match.channel_id] = holder
        self._channels[match.slug] = match.channel_id
        return holder

    async def _watch(self, channel_id: int, pusher: _Pusher) -> None:
        while not pusher.kicked:
            await asyncio.sleep(min(1.0, self._idle_after / 4))
            if time.monotonic() - pusher.last_put > self._idle_after:
                break
        if self._pushers.get(channel_id) is pusher:
            del self._pushers[channel_id]
            self._channels.pop(pusher.match.slug, None)
            lock = self._starting.get(channel_id)
            if lock is not None and not lock.locked():
                del self._starting[channel_id]
        await self._manager.release(pusher.session, "HTTP pusher went quiet")

    async def init(self, pusher: _Pusher, rendition: str, data: bytes) -> None:
        """Take an init segment; a repeated one means the encoder restarted: a new epoch."""
        if rendition in pusher.inits:
            pusher.session.next_epoch()
            pusher.inits.clear()
        pusher.inits.add(rendition)
        await pusher.session.add_init(rendition, data)

    async def close(self) -> None:
        """Stop every watchdog (sessions wait in reconnecting for the pushers to return)."""
        for pusher in list(self._pushers.values()):
            if pusher.watchdog is not None:
                pusher.watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pusher.watchdog
        self._pushers.clear()
        self._channels.clear()
