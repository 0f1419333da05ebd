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

import hashlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from stagecast.auth.service import Account
from stagecast.channels import tokens
from stagecast.errors import NotFound
from stagecast.fastpath import MediaRequest, Reply, matches
from stagecast.live.hooks import ViewEvent
from stagecast.live.playlists import Rendered
from stagecast.live.runtime import Live
from stagecast.live.service import ChannelLive
from stagecast.live.storage import StorageError, media_path, session_path

log = logging.getLogger(__name__)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_MEDIA_FILE = re.compile(r"^(init-\d{1,6}\.mp4|seg-\d{8,10}\.m4s)$")
_RENDITION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SESSION = re.compile(r"^s([1-9][0-9]{0,18})$")
_PLAYLIST_HEADERS = {"Cache-Control": "no-cache, max-age=1"}
_VIEWER = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_TOKEN_MAX = 1024

# Who is asking, looked up only when a channel is not open to the caller without it.
Identify = Callable[[], Awaitable[Account | None]]


async def answer(live: Live, request: MediaRequest, identify: Identify) -> Reply:
    """Answer a GET or HEAD under ``/hls/<slug>/``. Raises NotFound and BadRequest."""
    parts = request.path.split("/")  # "", "hls", slug, ...
    if len(parts) == 4 and parts[3] == "master.m3u8":
        return await _master(live, request, parts[2], identify)
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
    raise NotFound("not found")


def _playlist(
    rendered: Rendered, if_none_match: str | None, token: str | None, viewer: str | None = None
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
    headers = {**_PLAYLIST_HEADERS, "ETag": etag}
    if matches(if_none_match, etag):
        return Reply.not_modified(headers)
    body = tokens.carry(rendered.text, carried).encode() if carried else rendered.body
    return Reply.of(body, PLAYLIST_TYPE, headers)


def _viewer_id(given: str | None) -> str:
    """Return the player's playback session id, or a new one (what viewer counts count)."""
    return given if given and _VIEWER.fullmatch(given) else secrets.token_urlsafe(12)


async def _stored(live: Live, path: str) -> Rendered:
    """Return the playlist another process wrote to storage (hashed here for its ETag)."""
    try:
        return Rendered.of((await live.storage.read(path)).decode())
    except (FileNotFoundError, StorageError) as exc:
        raise NotFound("not found") from exc


async def _master(live: Live, request: MediaRequest, slug: str, identify: Identify) -> Reply:
    """Serve the master playlist of the channel's current session (404 when offline).

    Variant URIs carry a playback session id (``vs``, the page's own when it passes one), so
    the media playlist requests of each player can be counted as one viewer. ``preview=1``
    (the studio's own player) leaves it out, so the broadcaster is not counted.
    """
    token = request.text("token", max_length=_TOKEN_MAX)
    preview = request.query.get("preview", "").lower() in ("1", "true", "yes", "on")
    viewer = None if preview else _viewer_id(request.text("vs", max_length=64))
    found = await live.lookups.watchable(slug, token, None, identify=identify)
    local = live.manager.local(found.channel_id)
    if local is not None and (local.id == found.session_id or found.session_id is None):
        rendered = local.master()
        if rendered is None:
            raise NotFound("the stream is starting")
        return _playlist(rendered, request.if_none_match, token, viewer)
    if found.session_id is None:
        raise NotFound("the channel is offline")
    path = session_path(found.channel_id, found.session_id, "master.m3u8")
    return _playlist(await _stored(live, path), request.if_none_match, token, viewer)


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
    vs = request.text("vs", max_length=64)
    if vs and _VIEWER.fullmatch(vs):
        _count_view(live, ViewEvent(session_id, found.channel_id, vs))
    local = live.manager.local(found.channel_id)
    if local is not None and local.id == session_id:
        rendered = local.playlist(rendition)
        if rendered is None:
            raise NotFound("no such rendition")
        return _playlist(rendered, request.if_none_match, token)
    path = media_path(found.channel_id, session_id, rendition, "index.m3u8")
    return _playlist(await _stored(live, path), request.if_none_match, token)


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

    From memory while the session is held here and the file is in its live window; from
    storage otherwise.
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
    try:
        path = live.storage.resolve(media_path(found.channel_id, session_id, rendition, filename))
    except StorageError as exc:
        raise NotFound("not found") from exc
    return Reply.from_file(path, media_type, headers)


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
