"""HTTP endpoints of a channel's webhooks and their delivery log (owner or admin: 404 else)."""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query

from stagecast import cursors
from stagecast.auth.deps import AccountDep, CoreDep
from stagecast.auth.service import Account
from stagecast.bus import BusUnavailable
from stagecast.channels.policy import Action, require
from stagecast.channels.service import access_to
from stagecast.core import Core
from stagecast.errors import error_responses
from stagecast.webhooks import deliveries as delivery
from stagecast.webhooks import service as webhooks
from stagecast.webhooks.dispatcher import CHANGED_TOPIC, WebhooksChanged
from stagecast.webhooks.schemas import (
    AttemptOut,
    DeliveryList,
    DeliveryOut,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPatchIn,
    WebhookWithSecretOut,
)

router = APIRouter(tags=["webhooks"])

CursorQuery = Annotated[str | None, Query(max_length=256)]
# Ids beyond 64 bits cannot exist (and SQLite would refuse to bind them).
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def _managed(core: Core, slug: str, account: Account) -> int:
    """Return the channel id if the caller manages ``slug``; else 404."""
    found, access = await access_to(core.db, slug, account)
    require(access, Action.MANAGE)
    return found.id


async def _changed(core: Core, channel_id: int) -> None:
    """Tell every process the channel's webhooks changed (they follow its VOD topic)."""
    with contextlib.suppress(BusUnavailable):  # the watches reload every minute anyway
        await CHANGED_TOPIC.publish(core.bus, WebhooksChanged(channel_id))


@router.get("/api/v1/channels/{slug}/webhooks", response_model=WebhookList)
async def list_webhooks(slug: str, core: CoreDep, account: AccountDep) -> WebhookList:
    """List the channel's webhooks (owner or admin)."""
    channel_id = await _managed(core, slug, account)
    found = await webhooks.list_webhooks(core.db, channel_id)
    return WebhookList(items=[WebhookOut.of(h) for h in found])


@router.post(
    "/api/v1/channels/{slug}/webhooks",
    response_model=WebhookWithSecretOut,
    status_code=201,
    responses=error_responses(409),
)
async def create_webhook(
    slug: str, body: WebhookIn, core: CoreDep, account: AccountDep
) -> WebhookWithSecretOut:
    """Add a webhook; the response carries its signing secret, shown only here."""
    channel_id = await _managed(core, slug, account)
    hook, secret = await webhooks.create_webhook(
        core.db,
        channel_id,
        body.url,
        body.events,
        allow_private=core.settings.webhook_allow_private,
    )
    await _changed(core, channel_id)
    return WebhookWithSecretOut(**WebhookOut.of(hook).model_dump(), secret=secret)


@router.patch("/api/v1/channels/{slug}/webhooks/{webhook_id}", response_model=WebhookOut)
async def update_webhook(
    slug: str, webhook_id: Id, body: WebhookPatchIn, core: CoreDep, account: AccountDep
) -> WebhookOut:
    """Change a webhook's URL, events or enabled flag."""
    channel_id = await _managed(core, slug, account)
    hook = await webhooks.update_webhook(
        core.db,
        channel_id,
        webhook_id,
        url=body.url,
        events=body.events,
        enabled=body.enabled,
        allow_private=core.settings.webhook_allow_private,
    )
    await _changed(core, channel_id)
    return WebhookOut.of(hook)


@router.delete("/api/v1/channels/{slug}/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(slug: str, webhook_id: Id, core: CoreDep, account: AccountDep) -> None:
    """Remove a webhook and its delivery log."""
    channel_id = await _managed(core, slug, account)
    await webhooks.delete_webhook(core.db, channel_id, webhook_id)
    await _changed(core, channel_id)


@router.get("/api/v1/channels/{slug}/webhooks/{webhook_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    slug: str,
    webhook_id: Id,
    core: CoreDep,
    account: AccountDep,
    cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> DeliveryList:
    """Return the webhook's delivery log, newest first, each delivery with its attempts."""
    channel_id = await _managed(core, slug, account)
    await webhooks.get_webhook(core.db, channel_id, webhook_id)
    before = cursors.after_id(core.secret_key, "webhook-deliveries", webhook_id, cursor)
    found, more = await delivery.deliveries(core.db, webhook_id, before_id=before, limit=limit)
    items = [
        DeliveryOut(
            id=d.id,
            event=d.event,
            state=d.state,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_status=d.last_status,
            last_error=d.last_error,
            created_at=d.created_at,
            finished_at=d.finished_at,
            attempt_log=[AttemptOut(**asdict(a)) for a in d.attempt_log],
        )
        for d in found
    ]
    last = found[-1].id if more and found else None
    next_cursor = cursors.next_by_id(core.secret_key, "webhook-deliveries", webhook_id, last)
    return DeliveryList(items=items, has_more=more, next_cursor=next_cursor)
