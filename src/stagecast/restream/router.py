"""HTTP endpoints of a channel's restream destinations (owner or admin: 404 else)."""

from __future__ import annotations

import contextlib
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

import stagecast
from stagecast.auth.deps import AccountDep, CoreDep
from stagecast.auth.service import Account
from stagecast.bus import BusUnavailable
from stagecast.channels.policy import Action, require
from stagecast.channels.service import access_to
from stagecast.core import Core
from stagecast.errors import error_responses
from stagecast.restream import service
from stagecast.restream.runner import CHANGED_TOPIC, RestreamChanged
from stagecast.restream.runtime import RestreamDep
from stagecast.restream.schemas import (
    DestinationIn,
    DestinationList,
    DestinationOut,
    DestinationPatchIn,
)

router = APIRouter(tags=["restream"])
pages = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    directory=str(FilePath(stagecast.__file__).parent / "web" / "templates")
)

Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
_BASE = "/api/v1/channels/{slug}/destinations"


async def _managed(core: Core, slug: str, account: Account) -> int:
    """Return the channel id if the caller manages ``slug``; else 404."""
    found, access = await access_to(core.db, slug, account)
    require(access, Action.MANAGE)
    return found.id


async def _changed(core: Core, channel_id: int) -> None:
    """Tell the process holding the channel's session (any of them) to push to the new list."""
    with contextlib.suppress(BusUnavailable):  # a push in progress keeps its old list then
        await CHANGED_TOPIC.publish(core.bus, RestreamChanged(channel_id))


@router.get(_BASE, response_model=DestinationList)
async def list_destinations(
    slug: str, core: CoreDep, account: AccountDep, restream: RestreamDep
) -> DestinationList:
    """List the channel's destinations with the status of each push."""
    channel_id = await _managed(core, slug, account)
    found = await service.list_destinations(core.db, channel_id)
    return DestinationList(items=[DestinationOut.of(d, restream.statuses.get(d.id)) for d in found])


@router.post(_BASE, response_model=DestinationOut, status_code=201, responses=error_responses(409))
async def create_destination(
    slug: str, body: DestinationIn, core: CoreDep, account: AccountDep
) -> DestinationOut:
    """Add a destination; while the channel is live, an enabled one starts at once."""
    channel_id = await _managed(core, slug, account)
    created = await service.create_destination(
        core.db,
        channel_id,
        name=body.name,
        url=body.url,
        stream_key=body.stream_key,
        enabled=body.enabled,
    )
    await _changed(core, channel_id)
    return DestinationOut.of(created, None)


@router.patch(f"{_BASE}/{{destination_id}}", response_model=DestinationOut)
async def update_destination(
    slug: str,
    destination_id: Id,
    body: DestinationPatchIn,
    core: CoreDep,
    account: AccountDep,
    restream: RestreamDep,
) -> DestinationOut:
    """Change a destination (disabling one stops its push)."""
    channel_id = await _managed(core, slug, account)
    changed = await service.update_destination(
        core.db, channel_id, destination_id, **body.model_dump(exclude_unset=True)
    )
    await _changed(core, channel_id)
    return DestinationOut.of(changed, restream.statuses.get(changed.id))


@router.delete(f"{_BASE}/{{destination_id}}", status_code=204)
async def delete_destination(
    slug: str, destination_id: Id, core: CoreDep, account: AccountDep
) -> None:
    """Remove a destination (its push stops)."""
    channel_id = await _managed(core, slug, account)
    await service.delete_destination(core.db, channel_id, destination_id)
    await _changed(core, channel_id)


@pages.get("/studio/channels/{slug}/restream", response_class=HTMLResponse)
async def restream_page(request: Request, slug: str) -> HTMLResponse:
    """The studio page of a channel's destinations (the API decides who may see them)."""
    context = {"version": stagecast.__version__, "title": "Restream", "nav": "channels"}
    return templates.TemplateResponse(
        request, "restream.html", {**context, "slug": slug}, headers={"Cache-Control": "no-store"}
    )
