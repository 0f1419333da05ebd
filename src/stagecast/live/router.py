"""A channel's live status and controls: status, playback tokens, ending the stream.

The HLS itself (``/hls/<slug>/...``) is served on the media fast path, ``live.delivery``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from stagecast.auth.deps import AccountDep, CoreDep, MaybeAccountDep
from stagecast.channels import tokens
from stagecast.channels.policy import Action, require
from stagecast.channels.schemas import PlaybackTokenIn, PlaybackTokenOut
from stagecast.channels.service import access_to
from stagecast.channels.tokens import channel_target
from stagecast.errors import NotFound
from stagecast.live import service
from stagecast.live.runtime import LiveDep
from stagecast.live.states import ACTIVE, ON_AIR

router = APIRouter(tags=["live"])

TokenQuery = Annotated[str | None, Query(max_length=1024)]


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
