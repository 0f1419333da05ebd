"""HTTP endpoints of the studio: event feeds, viewer heartbeats, history, webhooks, /metrics.

Studio endpoints need ``Action.STUDIO`` (owner, moderator, admin) and answer 404 to anyone
else; webhooks need ``Action.MANAGE`` (owner, admin). The viewer feed and heartbeat follow
the video's own rule: public and unlisted channels for anyone, private ones with a playback
token (``?token=``) or a staff account.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from stagecast import cursors
from stagecast.auth.deps import AccountDep, CoreDep, MaybeAccountDep
from stagecast.auth.service import Account
from stagecast.bus import BusUnavailable
from stagecast.channels.policy import Access, Action, require
from stagecast.channels.service import access_to
from stagecast.core import Core
from stagecast.errors import NotFound, TooManyRequests
from stagecast.live.lookups import Lookups
from stagecast.metrics import delivery, history, webhooks
from stagecast.metrics.dispatch import CHANGED_TOPIC
from stagecast.metrics.feed import EventStream, FeedContext, studio_feed, viewer_feed
from stagecast.metrics.prometheus import CONTENT_TYPE, Exporter
from stagecast.metrics.runtime import Metrics
from stagecast.metrics.schemas import (
    AttemptOut,
    DeliveryList,
    DeliveryOut,
    HeartbeatIn,
    HeartbeatOut,
    SampleList,
    SampleOut,
    SessionList,
    SessionOut,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPatchIn,
    WebhookWithSecretOut,
)
from stagecast.signing import BadSignature

router = APIRouter(tags=["studio"])

_HEARTBEAT_WINDOW = 60.0
TokenQuery = Annotated[str | None, Query(max_length=1024)]
CursorQuery = Annotated[str | None, Query(max_length=256)]
# Ids beyond 64 bits cannot exist (and SQLite would refuse to bind them).
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


# -- helpers ---------------------------------------------------------------------------------


async def _studio_access(core: Core, slug: str, account: Account | None) -> Access:
    """Return the caller's access if they may see the studio of ``slug``; else 404."""
    _, access = await access_to(core.db, slug, account)
    require(access, Action.STUDIO)
    return access


async def _managed(core: Core, slug: str, account: Account) -> int:
    """Return the channel id if the caller manages ``slug``; else 404."""
    found, access = await access_to(core.db, slug, account)
    require(access, Action.MANAGE)
    return found.id


def _context(metrics: Metrics, slug: str, channel_id: int, *, studio: bool) -> FeedContext:
    async def read_state() -> tuple[str, int | None]:
        found = await metrics.channel(slug, fresh=True)
        if found is None or found.session_id is None:
            return "offline", None
        return found.state or "offline", found.session_id

    settings = metrics.core.settings
    return FeedContext(
        bus=metrics.core.bus,
        channel_id=channel_id,
        read_state=read_state,
        heartbeat=settings.metrics_feed_heartbeat_seconds,
        stats=metrics.studio_stats if studio else metrics.viewer_stats,
    )


def _cursor(core: Core, purpose: str, scope: int, last_id: int) -> str:
    return cursors.encode(core.secret_key, purpose, scope, (last_id,))


def _uncursor(core: Core, purpose: str, scope: int, cursor: str | None) -> int | None:
    """Return the id a cursor continues after (None for the first page). Raises 400."""
    if cursor is None:
        return None
    return cursors.int_key(cursors.decode(core.secret_key, purpose, scope, cursor, 1)[0])


# -- feeds -----------------------------------------------------------------------------------


@router.get(
    "/api/v1/studio/channels/{slug}/events",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def studio_events(slug: str, core: CoreDep, account: MaybeAccountDep) -> EventStream:
    """Stream the channel's studio events (SSE): ``state``, ``snapshot``, ``viewers``, ``vod``.

    Owner, moderators and admins only (404 for anyone else); 429 past the connection limits.
    A heartbeat comment is sent when nothing happened for 15 s.
    """
    access = await _studio_access(core, slug, account)
    metrics = core.get(Metrics)
    release = metrics.studio_slots.acquire(access.channel_id)
    publisher = metrics.publisher
    snapshot = publisher.latest.get(access.channel_id) or publisher.ended.peek(access.channel_id)
    context = _context(metrics, slug, access.channel_id, studio=True)
    return EventStream(studio_feed(context, snapshot), release)


@router.get(
    "/api/v1/channels/{slug}/events",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def viewer_events(
    slug: str, core: CoreDep, account: MaybeAccountDep, token: TokenQuery = None
) -> EventStream:
    """Stream the channel's public status (SSE ``status`` events: state, live, viewers).

    Sent when something changes, with a heartbeat comment every 15 s otherwise.
    """
    metrics = core.get(Metrics)
    found = await core.get(Lookups).watchable(slug, token, account)
    release = metrics.viewer_slots.acquire(found.channel_id)
    latest = metrics.publisher.latest.get(found.channel_id)
    viewers = int(latest["viewers"]["current"]) if latest is not None else 0
    context = _context(metrics, slug, found.channel_id, studio=False)
    return EventStream(viewer_feed(context, viewers), release)


@router.post("/api/v1/channels/{slug}/heartbeat", response_model=HeartbeatOut)
async def heartbeat(
    slug: str,
    body: HeartbeatIn,
    request: Request,
    core: CoreDep,
    account: MaybeAccountDep,
    token: TokenQuery = None,
) -> HeartbeatOut:
    """Count the caller's player as watching (anonymous callers too); rate limited per IP.

    Send every ``interval`` seconds while the video plays; the viewer is gone after two missed.
    404 when the channel is offline.
    """
    settings = core.settings
    client = request.client.host if request.client else "unknown"
    wait = await core.limiter.hit(
        f"viewer-heartbeat:{client}", settings.viewer_heartbeat_limit, _HEARTBEAT_WINDOW
    )
    if wait is not None:
        raise TooManyRequests("too many heartbeats", retry_after=wait)
    metrics = core.get(Metrics)
    found = await core.get(Lookups).watchable(slug, token, account)
    if found.session_id is None:
        raise NotFound("the channel is offline")
    metrics.viewers.seen(found.session_id, body.vs)
    return HeartbeatOut(session_id=found.session_id, interval=settings.viewer_heartbeat_seconds)


# -- history ---------------------------------------------------------------------------------


@router.get("/api/v1/studio/channels/{slug}/sessions", response_model=SessionList)
async def list_sessions(
    slug: str,
    core: CoreDep,
    account: AccountDep,
    cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SessionList:
    """List the channel's broadcasts, newest first (keyset-paged)."""
    access = await _studio_access(core, slug, account)
    before = _uncursor(core, "studio-sessions", access.channel_id, cursor)
    found, more = await history.channel_sessions(
        core.db, access.channel_id, before_id=before, limit=limit
    )
    next_cursor = (
        _cursor(core, "studio-sessions", access.channel_id, found[-1].id)
        if more and found
        else None
    )
    return SessionList(
        items=[SessionOut.of(s) for s in found], has_more=more, next_cursor=next_cursor
    )


@router.get(
    "/api/v1/studio/channels/{slug}/sessions/{session_id}/samples", response_model=SampleList
)
async def session_samples(
    slug: str,
    session_id: Id,
    core: CoreDep,
    account: AccountDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=history.MAX_PAGE)] = history.MAX_PAGE,
) -> SampleList:
    """Return a session's history (viewers, bit rate, verdict every 10 s), oldest first."""
    access = await _studio_access(core, slug, account)
    if await history.session_channel(core.db, session_id) != access.channel_id:
        raise NotFound("session not found")
    since = None
    if after is not None:
        try:
            since = datetime.fromisoformat(after)
        except ValueError as exc:
            raise BadSignature("after must be an ISO 8601 time") from exc
        if since.tzinfo is None:
            raise BadSignature("after must carry a time zone")
    found = await history.samples(core.db, session_id, after=since, limit=limit)
    return SampleList(
        session_id=session_id,
        items=[SampleOut.of(s) for s in found],
        next=found[-1].sampled_at if len(found) == limit else None,
    )


# -- webhooks --------------------------------------------------------------------------------


async def _changed(core: Core, channel_id: int) -> None:
    """Tell every process the channel's webhooks changed (they follow its VOD topic)."""
    with contextlib.suppress(BusUnavailable):  # the watches reload every minute anyway
        await core.bus.publish(CHANGED_TOPIC, {"channel_id": channel_id})


@router.get("/api/v1/channels/{slug}/webhooks", response_model=WebhookList)
async def list_webhooks(slug: str, core: CoreDep, account: AccountDep) -> WebhookList:
    """List the channel's webhooks (owner or admin)."""
    channel_id = await _managed(core, slug, account)
    found = await webhooks.list_webhooks(core.db, channel_id)
    return WebhookList(items=[WebhookOut.of(h) for h in found])


@router.post(
    "/api/v1/channels/{slug}/webhooks", response_model=WebhookWithSecretOut, status_code=201
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
    before = _uncursor(core, "webhook-deliveries", webhook_id, cursor)
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
    next_cursor = (
        _cursor(core, "webhook-deliveries", webhook_id, found[-1].id) if more and found else None
    )
    return DeliveryList(items=items, has_more=more, next_cursor=next_cursor)


# -- Prometheus ------------------------------------------------------------------------------


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, core: CoreDep) -> Response:
    """Serve every metric of this process in the Prometheus text format."""
    exporter = core.get(Exporter)
    exporter.check(request.headers.get("authorization"))
    return Response(exporter.render(), media_type=CONTENT_TYPE)
