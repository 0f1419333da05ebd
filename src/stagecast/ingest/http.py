"""HTTP segment push: encoders PUT CMAF init and media segments (ffmpeg ``-method PUT``).

``PUT /ingest/<channel>/<rendition>/<file>`` with the stream key as Bearer token. The server
builds every path itself; the client's file name only tells a playlist (ignored: we write our
own), an init segment, or a media segment apart, and the bytes must say the same (magic
check). Bodies are size-limited and must arrive within a deadline. A pusher that goes quiet is
treated like an RTMP publisher that disconnected.

Once a pusher is live, its later requests are checked against the key that opened the session
(in memory, constant time) instead of the database, so a database stall mid-stream does not
refuse segments. A rotation cuts the pusher off, and its next request is checked afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from dataclasses import dataclass, field

from fastapi import APIRouter, Request, Response

from stagecast.auth.deps import CoreDep
from stagecast.channels.service import KeyMatch, verify_stream_key
from stagecast.core import Core
from stagecast.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    StagecastError,
    Unauthorized,
    UnsupportedMedia,
)
from stagecast.live.fmp4 import MediaError, looks_like_init, looks_like_segment
from stagecast.live.manager import LiveManager
from stagecast.live.service import AlreadyLive
from stagecast.live.session import LiveSession

log = logging.getLogger(__name__)

router = APIRouter(tags=["ingest"])

_RENDITION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_SEGMENT_BYTES = 32 * 1024 * 1024
MAX_INIT_BYTES = 1024 * 1024
MAX_PLAYLIST_BYTES = 256 * 1024
BODY_DEADLINE = 30.0


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
        self._pushers: dict[int, _Pusher] = {}
        self._starting: dict[int, asyncio.Lock] = {}  # per channel, while its session opens

    def known(self, slug: str, key: str) -> KeyMatch | None:
        """Return the match of the live pusher of ``slug`` if ``key`` is the one it uses."""
        for pusher in self._pushers.values():
            if (
                pusher.match.slug == slug
                and not pusher.kicked
                and not pusher.session.ended
                and hmac.compare_digest(pusher.key.encode(), key.encode())
            ):
                return pusher.match
        return None

    async def session_for(self, match: KeyMatch, key: str) -> _Pusher:
        """Return the channel's pusher state, acquiring the session on the first request.

        Only requests of the same channel wait for each other while its session opens.
        """
        pusher = self._live(match.channel_id)
        if pusher is not None:
            return pusher
        async with self._starting.setdefault(match.channel_id, asyncio.Lock()):
            return self._live(match.channel_id) or await self._open(match, key)

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
        return holder

    async def _watch(self, channel_id: int, pusher: _Pusher) -> None:
        while not pusher.kicked:
            await asyncio.sleep(min(1.0, self._idle_after / 4))
            if time.monotonic() - pusher.last_put > self._idle_after:
                break
        if self._pushers.get(channel_id) is pusher:
            del self._pushers[channel_id]
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


async def _pusher_of(request: Request, core: Core, slug: str) -> tuple[KeyMatch, str]:
    """Return the channel the Bearer stream key opens (it must be ``slug``) and the key.

    Raises 401/404. A live pusher's own key is recognised without asking the database.
    """
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    key = value.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("send the stream key as 'Authorization: Bearer <stream key>'")
    known = core.get(HttpPushIngest).known(slug, key)
    if known is not None:
        return known, key
    match = await verify_stream_key(core.db, key)
    if match is None:
        raise Unauthorized("invalid stream key")
    if match.slug != slug:
        raise NotFound("channel not found")
    return match, key


async def read_body(request: Request, limit: int, deadline: float = BODY_DEADLINE) -> bytes:
    """Read the body: at most ``limit`` bytes, all of it within ``deadline`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BadRequest(f"body not received within {deadline:.0f} s") from exc
    return b"".join(chunks)


@router.put("/ingest/{slug}/{rendition}/{filename}", status_code=204)
async def push(
    slug: str, rendition: str, filename: str, request: Request, core: CoreDep
) -> Response:
    """Accept one pushed file: init segment, media segment, or (ignored) playlist."""
    match, key = await _pusher_of(request, core, slug)
    if not _RENDITION.fullmatch(rendition) or not _FILENAME.fullmatch(filename):
        raise NotFound("rendition or file name not allowed")
    if filename.endswith(".m3u8"):
        await read_body(request, MAX_PLAYLIST_BYTES)
        return Response(status_code=204)
    ingest = core.get(HttpPushIngest)
    is_init = filename.endswith(".mp4")
    data = await read_body(request, MAX_INIT_BYTES if is_init else MAX_SEGMENT_BYTES)
    # Bytes that are not what the name says never open a session.
    if not (looks_like_init(data) if is_init else looks_like_segment(data)):
        raise UnsupportedMedia("not a CMAF init (.mp4) or media segment (.m4s)")
    pusher = await ingest.session_for(match, key)
    try:
        if is_init:
            await ingest.init(pusher, rendition, data)
        elif not await pusher.session.add_segment(rendition, data):
            raise UnsupportedMedia(
                "segment refused: send the init segment first, or check the media"
            )
    except MediaError as exc:
        raise UnsupportedMedia(f"unreadable media: {exc}") from exc
    except OSError as exc:  # the media disk: nothing was listed, the encoder may send it again
        log.warning("session %s: could not store pushed %s: %s", pusher.session.id, filename, exc)
        raise ServiceUnavailable("media storage unavailable, try again") from exc
    return Response(status_code=204)


@router.delete("/ingest/{slug}/{rendition}/{filename}", status_code=204)
async def delete(
    slug: str, rendition: str, filename: str, request: Request, core: CoreDep
) -> Response:
    """Acknowledge an encoder deleting an old segment: the archive keeps everything."""
    await _pusher_of(request, core, slug)
    return Response(status_code=204)
