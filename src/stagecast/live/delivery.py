"""Live HLS for viewers: ``/hls/<slug>/...`` answered on the media fast path.

The process that holds a session serves its playlists and its hot media from memory: each
playlist is rendered to bytes once per change, with a strong ETag (``If-None-Match`` answers
304), and a public channel's media playlist is served as those bytes, untouched; init segments,
parts and the live window's segments come from the session's memory. Anything else (older DVR
segments, sessions held by another process) is served from the copies in storage, so viewers
can hit any process. Private channels need a playback token (``?token=``), which is carried
into every URI of the playlists served with it; the master carries the viewer's ``vs`` into its
variant URIs only, so a public channel's segment URLs are the same for every viewer.

Channel facts come from ``stagecast.live.lookups`` (one cache per process); who may watch from
its ``watchable``. No request here reads the database, except a staff viewer of a private
channel who comes with a session cookie instead of a token (their account is looked up).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from stagecast.auth.service import Account
from stagecast.channels import tokens
from stagecast.errors import BadRequest, NotFound, ServiceUnavailable
from stagecast.fastpath import MediaRequest, Reply, matches
from stagecast.live.hooks import ViewEvent
from stagecast.live.lowlatency import Position, part_uri
from stagecast.live.playlists import Rendered
from stagecast.live.runtime import Live
from stagecast.live.service import ChannelLive
from stagecast.live.session import LiveSession
from stagecast.live.storage import StorageError, media_path, session_path, stored_reply
from stagecast.ratelimit import RateLimiter, address_bucket

log = logging.getLogger(__name__)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_MEDIA_FILE = re.compile(r"^(init-\d{1,6}\.mp4|seg-\d{8,10}\.m4s)$")
_PART_FILE = re.compile(r"^part-(\d{8,10})\.m4s$")
_RENDITION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SESSION = re.compile(r"^s([1-9][0-9]{0,18})$")
# A standard playlist: a CDN may keep it one second (half a segment); a browser revalidates
# every reload (a stale copy there would hold a player a whole reload behind), cheaply: 304.
_STANDARD_CACHE = {"public": "public, max-age=0, s-maxage=1", "private": "private, no-cache"}
# The master carries each viewer's own ``vs``: a shared cache must not hand it to another.
_MASTER_CACHE = "private, no-cache"
_DIRECTIVES = frozenset({"_HLS_msn", "_HLS_part", "_HLS_skip"})
_MAX_NUMBER = 10**12
_VIEWER = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# New viewer ids one address may get per channel and minute (a household, a school behind NAT).
_VIEWERS_PER_MINUTE = 30
_TOKEN_MAX = 1024

# Who is asking, looked up only when a channel is not open to the caller without it.
Identify = Callable[[], Awaitable[Account | None]]


async def answer(
    live: Live, request: MediaRequest, identify: Identify, *, limiter: RateLimiter
) -> Reply:
    """Answer a GET or HEAD under ``/hls/<slug>/``. Raises NotFound and BadRequest."""
    parts = request.path.split("/")  # "", "hls", slug, ...
    if len(parts) == 4 and parts[3] == "master.m3u8":
        return await _master(live, request, parts[2], identify, limiter)
    if len(parts) == 6:
        match = _SESSION.fullmatch(parts[3])
        if match is None or not _RENDITION.fullmatch(parts[4]):
            raise NotFound("not found")
        session_id, rendition, filename = int(match.group(1)), parts[4], parts[5]
        if filename == "index.m3u8":
            return await _media_playlist(live, request, parts[2], session_id, rendition, identify)
        if _MEDIA_FILE.fullmatch(filename):
            return await _media_file(
                live, request, parts[2], session_id, rendition, filename, identify
            )
        part = _PART_FILE.fullmatch(filename)
        if part is not None:
            return await _part_file(
                live, request, parts[2], session_id, rendition, int(part.group(1)), identify
            )
    raise NotFound("not found")


def _playlist(
    rendered: Rendered,
    if_none_match: str | None,
    token: str | None,
    viewer: str | None = None,
    *,
    scope: str = "public",
    cache: str | None = None,
) -> Reply:
    """Answer with ``rendered`` (its query carried into every URI), or 304 if it is current.

    Without a query to carry, the bytes rendered once are sent as they are. With one, the
    ETag names the playlist and the query together, so a 304 still costs no rewrite.
    """
    carried = {k: v for k, v in (("token", token), ("vs", viewer)) if v}
    etag = rendered.etag
    if carried:
        digest = hashlib.blake2b(urlencode(carried).encode(), digest_size=8).hexdigest()
        etag = f'{etag[:-1]}-{digest}"'
    headers = {"Cache-Control": cache or _STANDARD_CACHE[scope], "ETag": etag}
    if matches(if_none_match, etag):
        return Reply.not_modified(headers)
    body = tokens.carry(rendered.text, carried).encode() if carried else rendered.body
    return Reply.of(body, PLAYLIST_TYPE, headers)


def _viewer_id(given: str | None) -> str:
    """Return the player's playback session id, or a new one (what viewer counts count)."""
    return given if given and _VIEWER.fullmatch(given) else secrets.token_urlsafe(12)


@functools.lru_cache(maxsize=4)
def _viewer_key(secret: str) -> bytes:
    return hashlib.blake2b(secret.encode(), digest_size=32).digest()


def _viewer_mac(secret: str, channel_id: int, viewer: str) -> str:
    key = _viewer_key(secret)
    mac = hashlib.blake2b(f"vs:{channel_id}:{viewer}".encode(), key=key, digest_size=9)
    return base64.urlsafe_b64encode(mac.digest()).decode()


def sign_viewer(secret: str, channel_id: int, viewer: str) -> str:
    """Return the ``vs`` the master hands out: the viewer id and a MAC bound to the channel."""
    return f"{viewer}.{_viewer_mac(secret, channel_id, viewer)}"


def verified_viewer(secret: str, channel_id: int, vs: str | None) -> str | None:
    """Return the viewer id of a ``vs`` this server signed for the channel, else None.

    Only these are counted: a playlist request with an id of the caller's own making counts
    for nothing, so random ids cannot inflate the count (issue 16 item 6).
    """
    viewer, dot, mac = (vs or "").rpartition(".")
    if not dot or not _VIEWER.fullmatch(viewer):
        return None
    expected = _viewer_mac(secret, channel_id, viewer)
    return viewer if hmac.compare_digest(mac.encode(), expected.encode()) else None


async def _issue_viewer(
    live: Live, limiter: RateLimiter, request: MediaRequest, channel_id: int
) -> str | None:
    """Sign the player's viewer id, at most ``_VIEWERS_PER_MINUTE`` new ones per address."""
    viewer = _viewer_id(request.text("vs", max_length=64))
    bucket = address_bucket(request.client or "unknown")
    wait = await limiter.hit(f"viewers:{channel_id}:{bucket}", _VIEWERS_PER_MINUTE, 60.0)
    if wait is not None:
        return None  # still plays, only not counted again
    return sign_viewer(live.lookups.secret_key, channel_id, viewer)


async def _stored(live: Live, path: str) -> Rendered:
    """Return the playlist another process wrote to storage (hashed here for its ETag)."""
    try:
        return Rendered.of((await live.storage.read(path)).decode())
    except (FileNotFoundError, StorageError) as exc:
        raise NotFound("not found") from exc


async def _master(
    live: Live, request: MediaRequest, slug: str, identify: Identify, limiter: RateLimiter
) -> Reply:
    """Serve the master playlist of the channel's current session (404 when offline).

    Variant URIs carry a playback session id (``vs``, the page's own when it passes one), so
    the media playlist requests of each player can be counted as one viewer. ``preview=1``
    (the studio's own player) leaves it out, so the broadcaster is not counted.
    """
    token = request.text("token", max_length=_TOKEN_MAX)
    preview = request.query.get("preview", "").lower() in ("1", "true", "yes", "on")
    found = await live.lookups.watchable(slug, token, None, identify=identify)
    viewer = None if preview else await _issue_viewer(live, limiter, request, found.channel_id)
    local = live.manager.local(found.channel_id)
    if local is not None and (local.id == found.session_id or found.session_id is None):
        rendered = local.master()
        if rendered is None:
            raise NotFound("the stream is starting")
        return _playlist(rendered, request.if_none_match, token, viewer, cache=_MASTER_CACHE)
    if found.session_id is None:
        raise NotFound("the channel is offline")
    shared = await live.edges.master(found.session_id) if live.edges is not None else None
    if shared is None:
        path = session_path(found.channel_id, found.session_id, "master.m3u8")
        shared = await _stored(live, path)
    return _playlist(shared, request.if_none_match, token, viewer, cache=_MASTER_CACHE)


@dataclass(frozen=True)
class _Edge:
    """One rendition's live playlist as this node serves it: held here, or mirrored."""

    position: Callable[[], Position]
    playlist: Callable[[bool], Rendered]  # the delta update with True
    wait_for: Callable[[Callable[[Position], bool]], Awaitable[bool]]
    part: Callable[[int], Awaitable[bytes | None]]


def _held_here(session: LiveSession, rendition: str) -> _Edge | None:
    playlist = session.media_playlist(rendition)
    if playlist is None:
        return None

    async def part(number: int) -> bytes | None:
        return session.part_data(rendition, number)

    return _Edge(
        playlist.position,
        lambda skip: playlist.rendered_delta() if skip else playlist.rendered(),
        functools.partial(session.wait_for, rendition),
        part,
    )


async def _edge(live: Live, found: ChannelLive, session_id: int, rendition: str) -> _Edge | None:
    """Return the rendition's live edge: of the session held here, else mirrored from its
    owner (another node), else None (then: the copy in storage, standard HLS)."""
    local = live.manager.local(found.channel_id)
    if local is not None and local.id == session_id:
        edge = _held_here(local, rendition)
        if edge is None:
            raise NotFound("no such rendition")
        return edge
    edges = live.edges
    if edges is None or (mirrored := await edges.rendition(session_id, rendition)) is None:
        return None

    async def part(number: int) -> bytes | None:
        return await edges.media(session_id, rendition, part_uri(number))

    return _Edge(mirrored.position, mirrored.playlist_of, mirrored.wait_for, part)


async def _media_playlist(
    live: Live,
    request: MediaRequest,
    slug: str,
    session_id: int,
    rendition: str,
    identify: Identify,
) -> Reply:
    """Serve one rendition's live playlist (and count the player behind ``vs`` as watching).

    ``vs`` is not carried into the segment URIs: they stay the same for every viewer.
    """
    token = request.text("token", max_length=_TOKEN_MAX)
    found = await _current(live, slug, session_id, token, identify)
    viewer = verified_viewer(
        live.lookups.secret_key, found.channel_id, request.text("vs", max_length=96)
    )
    if viewer is not None:
        _count_view(live, ViewEvent(session_id, found.channel_id, viewer))
    edge = await _edge(live, found, session_id, rendition)
    if edge is not None:
        return await _live_playlist(live, request, edge, found, token)
    if request.query.keys() & _DIRECTIVES:
        raise BadRequest("this server does not hold the stream: reload without _HLS_ directives")
    path = media_path(found.channel_id, session_id, rendition, "index.m3u8")
    scope = "private" if found.visibility == "private" else "public"
    return _playlist(await _stored(live, path), request.if_none_match, token, scope=scope)


async def _media_file(
    live: Live,
    request: MediaRequest,
    slug: str,
    session_id: int,
    rendition: str,
    filename: str,
    identify: Identify,
) -> Reply:
    """Serve an init or media segment (immutable: names are never reused).

    From memory while the session is held here and the file is in its live window (or, held
    by another node, while its shared copy lasts); from storage otherwise.
    """
    token = request.text("token", max_length=_TOKEN_MAX)
    found = await _current(live, slug, session_id, token, identify)
    scope = "private" if found.visibility == "private" else "public"
    media_type = "video/mp4" if filename.endswith(".mp4") else "video/iso.segment"
    headers = {"Cache-Control": f"{scope}, max-age=31536000, immutable"}
    local = live.manager.local(found.channel_id)
    if local is not None and local.id == session_id:
        data = local.media_data(rendition, filename)
        if data is not None:
            return Reply.of(data, media_type, headers)
    elif live.edges is not None:
        shared = await live.edges.media(session_id, rendition, filename)
        if shared is not None:
            return Reply.of(shared, media_type, headers)
    path = media_path(found.channel_id, session_id, rendition, filename)
    return await stored_reply(live.storage, path, media_type, headers)


async def _live_playlist(
    live: Live,
    request: MediaRequest,
    edge: _Edge,
    found: ChannelLive,
    token: str | None,
) -> Reply:
    """Serve a live playlist: blocking reloads and delta updates (LL-HLS)."""
    msn = request.number("_HLS_msn", maximum=_MAX_NUMBER)
    part = request.number("_HLS_part", maximum=_MAX_NUMBER)
    skip = _skip(request.query.get("_HLS_skip"))
    if part is not None and msn is None:
        raise BadRequest("_HLS_part needs _HLS_msn")
    scope = "private" if found.visibility == "private" else "public"
    position = edge.position()
    if not position.low_latency:
        if msn is not None or skip:
            raise BadRequest("this stream is not low-latency: no _HLS_ directives")
        return _playlist(edge.playlist(False), request.if_none_match, token, scope=scope)
    if msn is not None:
        await _hold(live, request, edge, position, msn, part)
        position = edge.position()
    rendered = edge.playlist(skip)
    cache = f"{scope}, max-age={3 * position.target_duration}" if msn is not None else "no-cache"
    return _playlist(rendered, request.if_none_match, token, cache=cache)


async def _hold(
    live: Live,
    request: MediaRequest,
    edge: _Edge,
    position: Position,
    msn: int,
    part: int | None,
) -> None:
    """Hold a blocking reload until the playlist has ``msn``/``part`` (draft 6.2.5.2).

    400 for a request too far ahead, 503 once held past three target durations, 429 past the
    bounds on held requests; answered at once when the session ends.
    """
    if position.has(msn, part):
        return
    target = position.part_target or 1.0
    per_segment = max(1, round(live.manager.deps.segment_seconds / target))
    if position.too_far(msn, part, per_segment):
        raise BadRequest("_HLS_msn/_HLS_part is too far ahead of the live edge")
    await _held(
        live,
        request,
        edge,
        3.0 * position.target_duration,
        lambda current: current.has(msn, part),
    )


async def _held(
    live: Live,
    request: MediaRequest,
    edge: _Edge,
    limit: float,
    ready: Callable[[Position], bool],
) -> None:
    with live.holds.hold(request.client):
        try:
            async with asyncio.timeout(limit):
                known = await edge.wait_for(ready)
        except TimeoutError as exc:
            raise ServiceUnavailable(
                "the stream did not reach the requested part in time", retry_after=1.0
            ) from exc
    if not known:
        raise NotFound("no such rendition")


def _skip(value: str | None) -> bool:
    if value is None:
        return False
    if value in ("YES", "v2"):  # v2 also skips date ranges: there are none to skip
        return True
    raise BadRequest("_HLS_skip must be YES or v2")


async def _part_file(
    live: Live,
    request: MediaRequest,
    slug: str,
    session_id: int,
    rendition: str,
    number: int,
    identify: Identify,
) -> Reply:
    """Serve a part from memory; the next part (the preload hint) is held until it exists."""
    token = request.text("token", max_length=_TOKEN_MAX)
    found = await _current(live, slug, session_id, token, identify)
    edge = await _edge(live, found, session_id, rendition)
    if edge is None:
        raise NotFound("no such part (the stream is not shared with this server)")
    position = edge.position()
    if not position.low_latency:
        raise NotFound("no such part")
    if number == position.next_part and not position.ended:
        await _held(
            live,
            request,
            edge,
            3.0 * position.target_duration,
            lambda current: current.next_part > number,
        )
    data = await edge.part(number)
    if data is None:
        raise NotFound("no such part (not yet made, or no longer held)")
    scope = "private" if found.visibility == "private" else "public"
    return Reply.of(
        data, "video/iso.segment", {"Cache-Control": f"{scope}, max-age=31536000, immutable"}
    )


def _count_view(live: Live, event: ViewEvent) -> None:
    for observer in live.hooks.on_view:
        try:
            observer(event)
        except Exception:  # counting must never break playback
            log.exception("view observer failed")


async def _current(
    live: Live, slug: str, session_id: int, token: str | None, identify: Identify
) -> ChannelLive:
    """Return the channel if ``session_id`` is its current session and the caller may watch.

    A session this process holds is current even before the cached lookup has seen it start.
    """
    found = await live.lookups.watchable(slug, token, None, identify=identify)
    if found.session_id != session_id:
        local = live.manager.local(found.channel_id)
        if local is None or local.id != session_id:
            raise NotFound("not the channel's current session")
    return found
