"""The front door's API: the channel directory (``GET /api/v1/channels``) and live thumbnails.

``GET /api/v1/channels`` is a public interface: signed out (or with ``scope=public``) it lists
public channels, those on air first, keyset-paged; signed in without ``scope`` it lists the
caller's own channels as it always has (``scope=mine``; admins add ``all=true``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from stagecast.auth.deps import CoreDep, MaybeAccountDep
from stagecast.channels import service
from stagecast.channels.router import rtmp_url
from stagecast.channels.schemas import ChannelList, ChannelOut
from stagecast.errors import NotFound, Unauthorized, error_responses
from stagecast.ingest.runtime import ffmpeg_binary
from stagecast.live.runtime import LiveDep
from stagecast.live.states import ON_AIR
from stagecast.studio.runtime import StudioDep
from stagecast.web import directory
from stagecast.web.directory import DirectoryPage, Listed, LiveThumbnails

router = APIRouter(tags=["channels"])

Scope = Literal["public", "mine"]
TokenQuery = Annotated[str | None, Query(max_length=1024)]


class DirectoryChannelOut(BaseModel):
    """A public channel as anyone sees it in the directory."""

    slug: str
    title: str
    owner: str
    description: str
    next_info: str = Field(description="What the owner says about the next stream.")
    live: bool
    state: str = Field(description="live, reconnecting or offline")
    started_at: datetime | None = Field(description="When the broadcast on air started.")
    viewers: int = Field(description="Viewers watching now (0 when offline).")
    page_url: str
    thumbnail_url: str | None = Field(description="A frame of the broadcast, while on air.")

    @classmethod
    def of(cls, found: Listed, viewers: int) -> DirectoryChannelOut:
        """Shape a directory entry; ``viewers`` of its broadcast on air."""
        live = found.session_id is not None and found.state in ON_AIR
        return cls(
            slug=found.slug,
            title=found.title,
            owner=found.owner,
            description=found.description,
            next_info=found.next_info,
            live=live,
            state=found.state if live and found.state else "offline",
            started_at=found.started_at if live else None,
            viewers=viewers if live else 0,
            page_url=f"/c/{found.slug}",
            thumbnail_url=f"/api/v1/channels/{found.slug}/thumbnail.jpg" if live else None,
        )


class DirectoryOut(BaseModel):
    """One page of the public directory: channels on air first, then the others."""

    items: list[DirectoryChannelOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
    has_more: bool


async def directory_out(page: DirectoryPage, studio: StudioDep) -> DirectoryOut:
    """Shape a directory page with the viewers of each broadcast on air."""
    sessions = [c.session_id for c in page.items if c.session_id is not None]
    counts = await studio.viewers.counts(sessions) if sessions else {}
    items = [
        DirectoryChannelOut.of(c, counts[c.session_id].current if c.session_id in counts else 0)
        for c in page.items
    ]
    return DirectoryOut(items=items, next_cursor=page.next_cursor, has_more=page.has_more)


@router.get(
    "/api/v1/channels", response_model=DirectoryOut | ChannelList, responses=error_responses(400)
)
async def list_channels(
    request: Request,
    account: MaybeAccountDep,
    core: CoreDep,
    studio: StudioDep,
    scope: Annotated[
        Scope | None,
        Query(
            description="public: the directory; mine: your channels. Default: mine when "
            "signed in, else public."
        ),
    ] = None,
    live: Annotated[bool, Query(description="Directory: only channels on air.")] = False,
    limit: Annotated[int, Query(ge=1, le=directory.MAX_LIMIT)] = 24,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    all: Annotated[bool, Query(description="mine, admins: every channel.")] = False,
) -> DirectoryOut | ChannelList:
    """List public channels (on air first, keyset-paged) or, signed in, your own channels."""
    if (scope or ("mine" if account is not None else "public")) == "public":
        page = await directory.public_channels(
            core.db, core.secret_key, limit=limit, token=cursor, live_only=live
        )
        return await directory_out(page, studio)
    if account is None:
        raise Unauthorized("sign in or present an API token to list your channels")
    found = await service.list_channels(core.db, account, all_channels=all)
    url = rtmp_url(core, request)
    return ChannelList(items=[ChannelOut.of(c, url) for c in found])


def _thumbnails(connection: HTTPConnection) -> LiveThumbnails:
    """Return this app's one cache of live thumbnails (made on first use)."""
    state = connection.app.state
    if getattr(state, "live_thumbnails", None) is None:
        state.live_thumbnails = LiveThumbnails()
    cache: LiveThumbnails = state.live_thumbnails
    return cache


@router.get(
    "/api/v1/channels/{slug}/thumbnail.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404, 503)},
)
async def live_thumbnail(
    slug: str,
    request: Request,
    core: CoreDep,
    live: LiveDep,
    account: MaybeAccountDep,
    token: TokenQuery = None,
) -> Response:
    """Return a recent frame of the channel's broadcast (404 when it is not on air)."""
    found = await live.lookups.watchable(slug, token, account)
    if found.session_id is None or found.state not in ON_AIR:
        raise NotFound("the channel is not live")
    ffmpeg = ffmpeg_binary(core.settings.ffmpeg)
    jpeg = await _thumbnails(request).of(core.db, live.storage, ffmpeg, found.session_id)
    reach = "public" if found.visibility != "private" else "private"
    headers = {"Cache-Control": f"{reach}, max-age={int(directory.THUMBNAIL_TTL)}"}
    return Response(jpeg, media_type="image/jpeg", headers=headers)
