"""HLS for viewers (``/hls/<slug>/...``) and the channel's live status and controls.

The process that holds a session serves its playlists and its hot media from memory: each
playlist is rendered to bytes once per change, with a strong ETag (``If-None-Match`` answers
304), and a public channel's media playlist is served as those bytes, untouched; init segments
and the live window's segments come from the session's memory. Anything else (older DVR
segments, sessions held by another process) is served from the copies in storage, so viewers
can hit any process. Playlists are ``no-cache, max-age=1``, segments immutable. Private
channels need a playback token (``?token=``), which is carried into every URI of the playlists
served with it; the master carries the viewer's ``vs`` into its variant URIs only, so a public
channel's segment URLs are the same for every viewer.

Channel facts come from ``stagecast.live.lookups`` (one cache per process), and who may watch
from its ``watchable``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from stagecast.auth.deps import AccountDep, CoreDep, MaybeAccountDep
from stagecast.auth.service import Account
from stagecast.channels import tokens
from stagecast.channels.policy import Action, require
from stagecast.channels.schemas import PlaybackTokenIn, PlaybackTokenOut
from stagecast.channels.service import access_to
from stagecast.channels.tokens import channel_target
from stagecast.errors import NotFound
from stagecast.live import service
from stagecast.live.hooks import ViewEvent
from stagecast.live.playlists import Rendered
from stagecast.live.runtime import Live, LiveDep
from stagecast.live.service import ChannelLive
from stagecast.live.states import ACTIVE, ON_AIR
from stagecast.live.storage import StorageError, media_path, session_path

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_MEDIA_FILE = re.compile(r"^(init-\d{1,6}\.mp4|seg-\d{8,10}\.m4s)$")
_RENDITION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_PLAYLIST_HEADERS = {"Cache-Control": "no-cache, max-age=1"}
_VIEWER = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def _playlist(
    rendered: Rendered, if_none_match: str | None, token: str | None, viewer: str | None = None
) -> Response:
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
    if if_none_match is not None and _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    body = tokens.carry(rendered.text, carried).encode() if carried else rendered.body
    return Response(body, media_type=PLAYLIST_TYPE, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    """Tell whether an ``If-None-Match`` value names ``etag`` (RFC 9110 13.1.2: weak compare)."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def _viewer_id(given: str | None) -> str:
    """Return the player's playback session id, or a new one (what viewer counts count)."""
    return given if given and _VIEWER.fullmatch(given) else secrets.token_urlsafe(12)


async def _stored(live: Live, path: str) -> Rendered:
    """Return the playlist another process wrote to storage (hashed here for its ETag)."""
    try:
        return Rendered.of((await live.storage.read(path)).decode())
    except (FileNotFoundError, StorageError) as exc:
        raise NotFound("not found") from exc


TokenQuery = Annotated[str | None, Query(max_length=1024)]
ViewerQuery = Annotated[str | None, Query(max_length=64)]
IfNoneMatch = Annotated[str | None, Header()]


@router.get("/hls/{slug}/master.m3u8", include_in_schema=False)
async def master(
    slug: str,
    live: LiveDep,
    account: MaybeAccountDep,
    token: TokenQuery = None,
    vs: ViewerQuery = None,
    preview: Annotated[bool, Query()] = False,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Serve the master playlist of the channel's current session (404 when offline).

    Variant URIs carry a playback session id (``vs``, the page's own when it passes one), so
    the media playlist requests of each player can be counted as one viewer. ``preview=1``
    (the studio's own player) leaves it out, so the broadcaster is not counted.
    """
    viewer = None if preview else _viewer_id(vs)
    found = await live.lookups.watchable(slug, token, account)
    if found.session_id is None:
        raise NotFound("the channel is offline")
    local = live.manager.local(found.channel_id)
    if local is not None and local.id == found.session_id:
        rendered = local.master()
        if rendered is None:
            raise NotFound("the stream is starting")
        return _playlist(rendered, if_none_match, token, viewer)
    path = session_path(found.channel_id, found.session_id, "master.m3u8")
    return _playlist(await _stored(live, path), if_none_match, token, viewer)


@router.get("/hls/{slug}/s{session_id}/{rendition}/index.m3u8", include_in_schema=False)
async def media_playlist(
    slug: str,
    session_id: int,
    rendition: str,
    live: LiveDep,
    account: MaybeAccountDep,
    token: TokenQuery = None,
    vs: ViewerQuery = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Serve one rendition's live playlist (and count the player behind ``vs`` as watching).

    ``vs`` is not carried into the segment URIs: they stay the same for every viewer.
    """
    found = await _current(live, slug, session_id, rendition, token, account)
    if vs and _VIEWER.fullmatch(vs):
        _count_view(live, ViewEvent(session_id, found.channel_id, vs))
    local = live.manager.local(found.channel_id)
    if local is not None and local.id == session_id:
        rendered = local.playlist(rendition)
        if rendered is None:
            raise NotFound("no such rendition")
        return _playlist(rendered, if_none_match, token)
    path = media_path(found.channel_id, session_id, rendition, "index.m3u8")
    return _playlist(await _stored(live, path), if_none_match, token)


@router.get("/hls/{slug}/s{session_id}/{rendition}/{filename}", include_in_schema=False)
async def media_file(
    slug: str,
    session_id: int,
    rendition: str,
    filename: str,
    live: LiveDep,
    account: MaybeAccountDep,
    token: TokenQuery = None,
) -> Response:
    """Serve an init or media segment (immutable: names are never reused).

    From memory while the session is held here and the file is in its live window; from
    storage otherwise.
    """
    if not _MEDIA_FILE.fullmatch(filename):
        raise NotFound("not found")
    found = await _current(live, slug, session_id, rendition, token, account)
    scope = "private" if found.visibility == "private" else "public"
    media_type = "video/mp4" if filename.endswith(".mp4") else "video/iso.segment"
    headers = {"Cache-Control": f"{scope}, max-age=31536000, immutable"}
    local = live.manager.local(found.channel_id)
    if local is not None and local.id == session_id:
        data = local.media_data(rendition, filename)
        if data is not None:
            return Response(data, media_type=media_type, headers=headers)
    try:
        path = live.storage.resolve(media_path(found.channel_id, session_id, rendition, filename))
    except StorageError as exc:
        raise NotFound("not found") from exc
    if not path.is_file():
        raise NotFound("not found")
    return FileResponse(path, media_type=media_type, headers=headers)


def _count_view(live: Live, event: ViewEvent) -> None:
    for observer in live.hooks.on_view:
        try:
            observer(event)
        except Exception:  # counting must never break playback
            log.exception("view observer failed")


async def _current(
    live: Live,
    slug: str,
    session_id: int,
    rendition: str,
    token: str | None,
    account: Account | None,
) -> ChannelLive:
    if not _RENDITION.fullmatch(rendition):
        raise NotFound("not found")
    found = await live.lookups.watchable(slug, token, account)
    if found.session_id != session_id:
        raise NotFound("not the channel's current session")
    return found


class LiveStatus(BaseModel):
    """Whether a channel is live, and where to play it."""

    slug: str
    title: str
    visibility: str
    live: bool
    state: str
    session_id: int | None
    started_at: str | None
    master_url: str | None
    playback_token: str | None = Field(
        default=None, description="Present for private channels the caller may watch."
    )
    latency: str = Field(
        description="The channel's latency setting, low (LL-HLS) or standard; "
        "it applies from the next session."
    )


@router.get("/api/v1/channels/{slug}/live", response_model=LiveStatus)
async def live_status(
    slug: str, core: CoreDep, live: LiveDep, account: MaybeAccountDep, token: TokenQuery = None
) -> LiveStatus:
    """Say whether the channel is live (public, or with access for private channels)."""
    found = await live.lookups.watchable(slug, token, account)
    issued = None
    if found.visibility == "private":
        issued = token or tokens.issue(core.secret_key, channel_target(found.channel_id))
    state = found.state or "offline"
    master_url = f"/hls/{found.slug}/master.m3u8" if found.session_id is not None else None
    if master_url and issued:
        master_url += f"?token={issued}"
    return LiveStatus(
        slug=found.slug,
        title=found.title,
        visibility=found.visibility,
        live=state in ON_AIR,
        state=state,
        session_id=found.session_id,
        started_at=found.started_at.isoformat() if found.started_at else None,
        master_url=master_url,
        playback_token=issued,
        latency=found.latency,
    )


@router.post(
    "/api/v1/channels/{slug}/playback-tokens", response_model=PlaybackTokenOut, status_code=201
)
async def create_playback_token(
    slug: str, body: PlaybackTokenIn, account: AccountDep, core: CoreDep
) -> PlaybackTokenOut:
    """Make a signed, expiring link to a channel (owners and admins)."""
    found, access = await access_to(core.db, slug, account)
    require(access, Action.MANAGE)
    return PlaybackTokenOut.signed(
        core.secret_key,
        channel_target(found.id),
        body,
        page=f"/c/{found.slug}",
        playlist=f"/hls/{found.slug}/master.m3u8",
    )


@router.post("/api/v1/channels/{slug}/end", status_code=204)
async def end_stream(slug: str, account: AccountDep, core: CoreDep, live: LiveDep) -> None:
    """End the channel's live session now (owner or admin); the recording becomes a VOD."""
    found, access = await access_to(core.db, slug, account)
    require(access, Action.MANAGE)
    manager = live.manager
    if await manager.end(found.id, "ended by the broadcaster"):
        live.lookups.cache.invalidate(slug)
        return
    current = await service.channel_live(core.db, slug)
    if current is None or current.session_id is None:
        raise NotFound("the channel is not live")
    # Held by another process (or by none, after a crash): end it through the database.
    # The holding process sees the end on its next segment and lets its publisher go.
    await manager.end_remote(current.session_id, "ended by the broadcaster", ACTIVE)
    live.lookups.cache.invalidate(slug)
