"""HTTP endpoints for channels, stream keys and moderators.

The list of channels (``GET /api/v1/channels``: the public directory, or the caller's own) is
``stagecast.web.front``'s: the directory shows live state and viewers, which live above here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from stagecast.auth.deps import AccountDep, CoreDep
from stagecast.channels import service
from stagecast.channels.policy import Action, Grant, require
from stagecast.channels.schemas import (
    ChannelCreateIn,
    ChannelOut,
    ChannelPatchIn,
    ChannelWithKeyOut,
    ModeratorIn,
    ModeratorList,
    ModeratorOut,
)
from stagecast.core import Core
from stagecast.errors import error_responses

router = APIRouter(prefix="/api/v1/channels", tags=["channels"])


def rtmp_url(core: Core, request: Request) -> str:
    """Return the server URL an encoder should publish to (OBS "Server")."""
    host = request.url.hostname or core.settings.host
    port = core.settings.rtmp_port
    suffix = "" if port == 1935 else f":{port}"
    return f"rtmp://{host}{suffix}/live"


@router.post("", response_model=ChannelWithKeyOut, status_code=201, responses=error_responses(409))
async def create_channel(
    body: ChannelCreateIn, request: Request, account: AccountDep, core: CoreDep
) -> ChannelWithKeyOut:
    """Create a channel; the response carries its stream key, shown only here."""
    created, key = await service.create_channel(
        core.db,
        account,
        body.slug,
        title=body.title,
        description=body.description,
        visibility=body.visibility,
        profile=body.profile,
        dvr_window_seconds=body.dvr_window_seconds,
        latency=body.latency,
        max_channels=core.settings.channels_per_user,
    )
    url = rtmp_url(core, request)
    return ChannelWithKeyOut(channel=ChannelOut.of(created, url), stream_key=key, rtmp_url=url)


@router.get("/{slug}", response_model=ChannelOut)
async def get_channel(
    slug: str, request: Request, account: AccountDep, core: CoreDep
) -> ChannelOut:
    """Return a channel the caller manages (404 otherwise)."""
    found = await service.managed_channel(core.db, account, slug)
    return ChannelOut.of(found, rtmp_url(core, request))


@router.patch("/{slug}", response_model=ChannelOut)
async def update_channel(
    slug: str, body: ChannelPatchIn, request: Request, account: AccountDep, core: CoreDep
) -> ChannelOut:
    """Change a channel's title, description, visibility, profile, DVR window or latency.

    Profile and latency apply from the channel's next session.
    """
    fields = body.model_dump(exclude_unset=True, exclude_none=True)
    updated = await service.update_channel(core.db, account, slug, fields)
    await service.announce_change(core.bus, updated)
    return ChannelOut.of(updated, rtmp_url(core, request))


@router.post("/{slug}/key", response_model=ChannelWithKeyOut)
async def rotate_key(
    slug: str, request: Request, account: AccountDep, core: CoreDep
) -> ChannelWithKeyOut:
    """Replace the stream key; a publisher using the old key is disconnected."""
    await service.managed_channel(core.db, account, slug)
    rotated, key = await service.rotate_key(core.db, slug)
    await service.announce_rotation(core.bus, rotated)
    url = rtmp_url(core, request)
    return ChannelWithKeyOut(channel=ChannelOut.of(rotated, url), stream_key=key, rtmp_url=url)


@router.get("/{slug}/moderators", response_model=ModeratorList)
async def list_moderators(slug: str, account: AccountDep, core: CoreDep) -> ModeratorList:
    """List the channel's moderators (owner, moderators and admins)."""
    found, access = await service.access_to(core.db, slug, account)
    require(access, Action.STUDIO)
    moderators = await service.list_moderators(core.db, found.id)
    return ModeratorList(items=[ModeratorOut.of(m) for m in moderators])


@router.put("/{slug}/moderators/{username}", response_model=ModeratorOut)
async def set_moderator(
    slug: str, username: str, body: ModeratorIn, account: AccountDep, core: CoreDep
) -> ModeratorOut:
    """Make ``username`` a moderator (owner or admin only)."""
    found, access = await service.access_to(core.db, slug, account)
    require(access, Action.MANAGE_MODERATORS)
    grant = Grant(body.can_delete, body.can_timeout, body.can_ban, body.can_manage_filters)
    moderator = await service.set_moderator(core.db, found.id, username, grant, account.id)
    await service.announce_moderators(core.bus, found.id)
    return ModeratorOut.of(moderator)


@router.delete("/{slug}/moderators/{username}", status_code=204)
async def remove_moderator(slug: str, username: str, account: AccountDep, core: CoreDep) -> None:
    """Remove a moderator (owner or admin only)."""
    found, access = await service.access_to(core.db, slug, account)
    require(access, Action.MANAGE_MODERATORS)
    await service.remove_moderator(core.db, found.id, username)
    await service.announce_moderators(core.bus, found.id)
