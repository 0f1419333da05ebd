"""Serve VODs to players: HLS under ``/hls/vods/{id}/`` and the watch page ``/v/{id}``.

No request reads the database (except a signed-in viewer of a VOD that is not open to
everyone, whose account and moderator grant are looked up): the VOD's facts and its playlists
come from ``vod.lookups`` (one cache per process, kept current over the bus), segments and the
thumbnail are one file each.

Visibility follows the channel unless the VOD overrides it, and is decided by
``channels.policy``: private VODs need their owner, a moderator, an admin, or a playback token
for ``vod:<id>`` (``?token=``); unlisted ones need the same or the VOD's link key (also
``?token=``, see ``channels.tokens``). The token is carried into every URI of the playlists
served with it. Playlists carry a strong ETag (``If-None-Match`` answers 304) and may be cached
briefly (a delete or a visibility change shows within seconds); segments and the thumbnail are
immutable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path as FilePath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

import stagecast
from stagecast.auth.deps import CoreDep, identify
from stagecast.auth.service import Account
from stagecast.channels import tokens
from stagecast.channels.policy import Access, can_view, with_token
from stagecast.core import Core
from stagecast.errors import NotFound
from stagecast.fastpath import MediaRequest, Reply, matches
from stagecast.live.playlists import Rendered
from stagecast.live.runtime import Live
from stagecast.live.storage import media_path, session_path, stored_reply
from stagecast.vod import service
from stagecast.vod.building import MASTER, PLAYLIST
from stagecast.vod.library import Vod
from stagecast.vod.lookups import Links, Lookups
from stagecast.vod.runtime import VodsDep
from stagecast.vod.schemas import playback_url, thumbnail_url

router = APIRouter(include_in_schema=False)
# The page is one of the web layer's templates; vod cannot import the web package itself.
templates = Jinja2Templates(
    directory=str(FilePath(stagecast.__file__).parent / "web" / "templates")
)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_RENDITION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_MEDIA_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.(m4s|mp4)$")
_PLAYLIST_MAX_AGE = 10
_IMMUTABLE = "max-age=31536000, immutable"

VodId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_VOD_ID = re.compile(r"^[1-9][0-9]{0,17}$")  # 1 .. 10**18 - 1, inside the 64-bit bound
_TOKEN_MAX = 1024
TokenQuery = Annotated[str | None, Query(max_length=1024)]


Identify = Callable[[], Awaitable[Account | None]]


async def answer(
    core: Core, live: Live, lookups: Lookups, request: MediaRequest, identify: Identify
) -> Reply:
    """Answer a GET or HEAD under ``/hls/vods/<id>/``. Raises NotFound and BadRequest."""
    parts = request.path.split("/")  # "", "hls", "vods", id, ...
    if len(parts) not in (5, 6) or not _VOD_ID.fullmatch(parts[3]):
        raise NotFound("not found")
    vod_id = int(parts[3])
    token = request.text("token", max_length=_TOKEN_MAX)
    if len(parts) == 5:
        if parts[4] == "master.m3u8":
            found, token = await _ready(core, lookups, vod_id, token, identify)
            path = session_path(found.channel_id, found.session_id, MASTER)
            return await _playlist(lookups, found, path, token, request.if_none_match)
        if parts[4] == "thumbnail.jpg":
            found, _ = await _ready(core, lookups, vod_id, token, identify)
            if not found.thumbnail_path:
                raise NotFound("the vod has no thumbnail")
            return await _file(live, found, found.thumbnail_path, "image/jpeg")
        raise NotFound("not found")
    rendition, filename = parts[4], parts[5]
    is_playlist = filename == PLAYLIST
    if not _RENDITION.fullmatch(rendition) or not (is_playlist or _MEDIA_FILE.fullmatch(filename)):
        raise NotFound("not found")
    found, token = await _ready(core, lookups, vod_id, token, identify)
    path = media_path(found.channel_id, found.session_id, rendition, filename)
    if is_playlist:
        links = _links(lookups, found, token)
        if links is not Links.HERE:  # the URIs are absolute: nothing to carry a token to
            token = None
        return await _playlist(lookups, found, path, token, request.if_none_match, links)
    media_type = "video/mp4" if filename.endswith(".mp4") else "video/iso.segment"
    return await _file(live, found, path, media_type)


async def watchable(
    core: Core, lookups: Lookups, vod_id: int, token: str | None, identify: Identify
) -> tuple[Vod, str | None]:
    """Return the VOD and the token to propagate; NotFound unless the caller may watch it.

    The caller's identity is only looked up when the VOD is not open to everyone. The watch
    page and everything shown beside the VOD (its chat replay) are decided here.
    """
    found = await lookups.vod(vod_id)
    if found is None:
        raise NotFound("vod not found")
    target = tokens.vod_target(found.id)
    # The link key decides the visibility itself: without it an unlisted VOD is private.
    link_ok = tokens.opens_link(core.secret_key, token, target)
    known = with_token(found.access(None, link_ok=link_ok), core.secret_key, token, target)

    async def standing() -> Access:
        return await service.viewer_access(
            core.db,
            found,
            await identify(),
            playback_token_ok=known.playback_token_ok,
            link_ok=link_ok,
        )

    access = await can_view(known, standing, what="vod")
    return found, token if access.playback_token_ok or link_ok else None


async def _ready(
    core: Core, lookups: Lookups, vod_id: int, token: str | None, identify: Identify
) -> tuple[Vod, str | None]:
    found, token = await watchable(core, lookups, vod_id, token, identify)
    if found.status != "ready":
        raise NotFound("the vod is not ready")
    return found, token


def _scope(found: Vod) -> str:
    return "private" if found.effective_visibility == "private" else "public"


def _links(lookups: Lookups, found: Vod, token: str | None) -> Links:
    """Where a rendition playlist's media URIs point for this caller.

    With ``STAGECAST_MEDIA_BASE_URL`` a VOD open to everyone points at it; one that needs a
    token or a signed-in viewer gets presigned, expiring URLs of the bucket (on a local disk,
    none: its media stays here, behind the token).
    """
    if lookups.media_base_url is None:
        return Links.HERE
    if _scope(found) == "private" or token:
        return Links.SIGNED if lookups.signs_urls else Links.HERE
    return Links.BASE


async def _playlist(
    lookups: Lookups,
    found: Vod,
    path: str,
    token: str | None,
    if_none_match: str | None,
    links: Links = Links.HERE,
) -> Reply:
    """Answer with the playlist at ``path`` (``token`` carried into every URI), or 304.

    Without a token the bytes rendered once are sent as they are; with one, the ETag names
    the playlist and the token together, so a 304 still costs no rewrite.
    """
    rendered: Rendered = await lookups.playlist(path, links)
    etag = rendered.etag
    if token:
        digest = hashlib.blake2b(token.encode(), digest_size=8).hexdigest()
        etag = f'{etag[:-1]}-{digest}"'
    headers = {"Cache-Control": f"{_scope(found)}, max-age={_PLAYLIST_MAX_AGE}", "ETag": etag}
    if matches(if_none_match, etag):
        return Reply.not_modified(headers)
    body = tokens.carry(rendered.text, {"token": token}).encode() if token else rendered.body
    return Reply.of(body, PLAYLIST_TYPE, headers)


async def _file(live: Live, found: Vod, path: str, media_type: str) -> Reply:
    headers = {"Cache-Control": f"{_scope(found)}, {_IMMUTABLE}"}
    return await stored_reply(live.storage, path, media_type, headers)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@router.get("/v/{vod_id}", response_class=HTMLResponse)
async def watch_page(
    request: Request, vod_id: VodId, core: CoreDep, vods: VodsDep, token: TokenQuery = None
) -> HTMLResponse:
    """The watch page: the player on the VOD's master playlist (404 if hidden from you)."""

    async def who() -> Account | None:
        return (await identify(request, core)).account

    found, token = await watchable(core, vods.lookups, vod_id, token, who)
    suffix = f"?token={quote(token, safe='')}" if token else ""
    context = {
        "version": stagecast.__version__,
        "title": found.title,
        "vod": found,
        "duration": _clock(found.duration),
        "master_url": playback_url(found.id) + suffix,
        "poster_url": thumbnail_url(found.id) + suffix if found.thumbnail_path else "",
    }
    return templates.TemplateResponse(
        request, "vod.html", context, headers={"Cache-Control": "no-store"}
    )
