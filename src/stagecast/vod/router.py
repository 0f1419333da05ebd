"""HTTP endpoints of the VOD library: the studio's list and edits, the public lists.

Thin: parse, call the service (which authorizes through ``channels.policy``), shape. An edit or
a delete is announced on ``vods.changed`` once it has committed, so every process's playback
sees it at once (``vod.lookups``). Playback (HLS and the watch page) lives in ``vod.hls``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from stagecast.auth.deps import AccountDep, CoreDep, MaybeAccountDep
from stagecast.channels.policy import Action, require
from stagecast.channels.schemas import PlaybackTokenIn, PlaybackTokenOut
from stagecast.channels.service import SLUG_RE, access_to
from stagecast.channels.tokens import vod_target
from stagecast.errors import NotFound, error_responses
from stagecast.vod import library, service
from stagecast.vod.events import VodChanged
from stagecast.vod.runtime import VodsDep
from stagecast.vod.schemas import (
    PublicVodPage,
    Status,
    VodOut,
    VodPage,
    VodPatchIn,
    page_url,
    playback_url,
)
from stagecast.vod.service import LibraryRequest

router = APIRouter(tags=["vods"])

VodId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Limit = Annotated[int, Query(ge=1, le=library.MAX_LIMIT, description="Page size, 1-100.")]
Cursor = Annotated[
    str | None, Query(description="`next_cursor` of the previous page (opaque; 400 if altered).")
]


@router.get("/api/v1/studio/vods", response_model=VodPage, responses=error_responses(403, 404))
async def list_vods(
    account: AccountDep,
    core: CoreDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Status | None = None,
    channel: Annotated[str | None, Query(description="A channel slug you manage.")] = None,
    owner: Annotated[str | None, Query(description="A username (admins).")] = None,
    q: Annotated[str | None, Query(max_length=service.MAX_SEARCH)] = None,
    everything: Annotated[
        bool, Query(alias="all", description="Every owner's VODs (admins).")
    ] = False,
) -> VodPage:
    """List the VODs of the caller's channels, newest first, with an exact total.

    Admins may pass ``owner`` or ``channel``, and see every VOD only with ``all=true``.
    """
    want = LibraryRequest(owner, channel, status, q, everything)
    filt = await service.studio_filter(core.db, account, want)
    if filt is None:
        return VodPage(items=[], next_cursor=None, has_more=False, total=0, total_exact=True)
    page = await library.library_page(core.db, core.secret_key, filt, limit=limit, token=cursor)
    return VodPage.of(page, core.secret_key)


@router.get("/api/v1/studio/vods/{vod_id}", response_model=VodOut)
async def get_vod(vod_id: VodId, account: AccountDep, core: CoreDep) -> VodOut:
    """Return one of the caller's VODs (404 for anyone but its owner and admins)."""
    return VodOut.for_owner(await service.get_vod(core.db, account, vod_id), core.secret_key)


@router.patch("/api/v1/studio/vods/{vod_id}", response_model=VodOut)
async def update_vod(
    vod_id: VodId, body: VodPatchIn, account: AccountDep, core: CoreDep, vods: VodsDep
) -> VodOut:
    """Change a VOD's title, description or visibility."""
    fields = body.model_dump(exclude_unset=True, exclude_none=True)
    found = await service.update_vod(core.db, account, vod_id, fields)
    if fields:
        await vods.lookups.announce(VodChanged(found.id, "updated"))
    return VodOut.for_owner(found, core.secret_key)


@router.delete("/api/v1/studio/vods/{vod_id}", status_code=204)
async def delete_vod(vod_id: VodId, account: AccountDep, core: CoreDep, vods: VodsDep) -> None:
    """Delete a VOD: gone from lists and playback at once, its files purged later."""
    delay = core.settings.vod_purge_delay_seconds
    await service.delete_vod(core.db, account, vod_id, purge_after=delay)
    await vods.lookups.announce(VodChanged(vod_id, "deleted"))


@router.post(
    "/api/v1/studio/vods/{vod_id}/playback-tokens",
    response_model=PlaybackTokenOut,
    status_code=201,
)
async def create_playback_token(
    vod_id: VodId, body: PlaybackTokenIn, account: AccountDep, core: CoreDep
) -> PlaybackTokenOut:
    """Make a signed, expiring link to one VOD (for private VODs; owners and admins)."""
    found = await service.get_vod(core.db, account, vod_id)
    return PlaybackTokenOut.signed(
        core.secret_key,
        vod_target(found.id),
        body,
        page=page_url(found.id),
        playlist=playback_url(found.id),
    )


@router.get("/api/v1/channels/{slug}/vods", response_model=PublicVodPage)
async def channel_vods(
    slug: str,
    account: MaybeAccountDep,
    core: CoreDep,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> PublicVodPage:
    """List a channel's public VODs, newest first (404 if the channel is hidden from you)."""
    if not SLUG_RE.fullmatch(slug):
        raise NotFound("channel not found")
    found, access = await access_to(core.db, slug, account)
    require(access, Action.VIEW)
    page = await library.channel_page(
        core.db,
        found.id,
        found.visibility == "public",
        core.secret_key,
        limit=limit,
        token=cursor,
    )
    return PublicVodPage.of(page)


@router.get("/api/v1/vods", response_model=PublicVodPage)
async def public_vods(core: CoreDep, limit: Limit = 20, cursor: Cursor = None) -> PublicVodPage:
    """List every channel's public VODs, newest first (anyone, signed in or not)."""
    page = await library.public_page(core.db, core.secret_key, limit=limit, token=cursor)
    return PublicVodPage.of(page)
