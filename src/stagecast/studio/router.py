"""HTTP endpoints of the studio: event feeds, viewer heartbeats and history.

Studio endpoints need ``Action.STUDIO`` (owner, moderator, admin) and answer 404 to anyone
else. The viewer feed and heartbeat follow the video's own rule: public and unlisted channels
for anyone, private ones with a playback token (``?token=``) or a staff account.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from stagecast import cursors
from stagecast.auth.deps import AccountDep, CoreDep, MaybeAccountDep
from stagecast.auth.service import Account
from stagecast.channels.policy import Access, Action, require
from stagecast.channels.service import access_to
from stagecast.core import Core
from stagecast.errors import NotFound, TooManyRequests, error_responses
from stagecast.live.runtime import Live, LiveDep
from stagecast.ratelimit import address_bucket
from stagecast.signing import BadSignature
from stagecast.studio import history
from stagecast.studio.feeds import EventStream, FeedContext, studio_feed, viewer_feed
from stagecast.studio.runtime import Studio, StudioDep
from stagecast.studio.schemas import (
    HeartbeatIn,
    HeartbeatOut,
    SampleList,
    SampleOut,
    SessionList,
    SessionOut,
)

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


def _context(
    core: Core, live: Live, studio: Studio, slug: str, channel_id: int, *, owners: bool
) -> FeedContext:
    lookups = live.lookups

    async def read_state() -> tuple[str, int | None]:
        # Kept current over the bus (``Lookups.follow``): a join reads no database.
        found = await lookups.channel(slug)
        if found is None or found.session_id is None:
            return "offline", None
        return found.state or "offline", found.session_id

    return FeedContext(
        bus=core.bus,
        channel_id=channel_id,
        read_state=read_state,
        heartbeat=core.settings.metrics_feed_heartbeat_seconds,
        stats=studio.studio_stats if owners else studio.viewer_stats,
    )


def _address(request: Request) -> str:
    """Return the client's address bucket (IPv6: its /64), the key of per-address limits."""
    return address_bucket(request.client.host if request.client else "unknown")


# -- feeds -----------------------------------------------------------------------------------


@router.get(
    "/api/v1/studio/channels/{slug}/events",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(429)},
)
async def studio_events(
    slug: str, core: CoreDep, live: LiveDep, studio: StudioDep, account: MaybeAccountDep
) -> EventStream:
    """Stream the channel's studio events (SSE): ``state``, ``history``, ``snapshot``,
    ``viewers``, ``vod``.

    Owner, moderators and admins only (404 for anyone else); 429 past the connection limits.
    A heartbeat comment is sent when nothing happened for 15 s.
    """
    access = await _studio_access(core, slug, account)
    holder = f"account:{account.id}" if account is not None else None  # only staff get here
    release = studio.studio_slots.acquire(access.channel_id, holder)
    publisher = studio.publisher
    snapshot = publisher.latest.get(access.channel_id) or publisher.ended.peek(access.channel_id)
    context = _context(core, live, studio, slug, access.channel_id, owners=True)
    context.read_history = functools.partial(history.recent, core.db)
    context.read_vod = functools.partial(history.ready_vod, core.db)
    return EventStream(studio_feed(context, snapshot), release)


@router.get(
    "/api/v1/channels/{slug}/events",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(429)},
)
async def viewer_events(
    slug: str,
    request: Request,
    core: CoreDep,
    live: LiveDep,
    studio: StudioDep,
    account: MaybeAccountDep,
    token: TokenQuery = None,
) -> EventStream:
    """Stream the channel's public status (SSE ``status`` events: state, live, viewers).

    Sent when something changes, with a heartbeat comment every 15 s otherwise.
    """
    found = await live.lookups.watchable(slug, token, account)
    release = studio.viewer_slots.acquire(found.channel_id, _address(request))
    latest = studio.publisher.latest.get(found.channel_id)
    viewers = latest.viewers.current if latest is not None else 0
    context = _context(core, live, studio, slug, found.channel_id, owners=False)
    return EventStream(viewer_feed(context, viewers), release)


@router.post(
    "/api/v1/channels/{slug}/heartbeat",
    response_model=HeartbeatOut,
    responses=error_responses(429),
)
async def heartbeat(
    slug: str,
    body: HeartbeatIn,
    request: Request,
    core: CoreDep,
    live: LiveDep,
    studio: StudioDep,
    account: MaybeAccountDep,
    token: TokenQuery = None,
) -> HeartbeatOut:
    """Count the caller's player as watching (anonymous callers too); rate limited per IP.

    Send every ``interval`` seconds while the video plays; the viewer is gone after two missed.
    404 when the channel is offline.
    """
    settings = core.settings
    wait = await core.limiter.hit(
        f"viewer-heartbeat:{_address(request)}", settings.viewer_heartbeat_limit, _HEARTBEAT_WINDOW
    )
    if wait is not None:
        raise TooManyRequests("too many heartbeats", retry_after=wait)
    found = await live.lookups.watchable(slug, token, account)
    if found.session_id is None:
        raise NotFound("the channel is offline")
    studio.viewers.seen(found.session_id, body.vs)
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
    before = cursors.after_id(core.secret_key, "studio-sessions", access.channel_id, cursor)
    found, more = await history.channel_sessions(
        core.db, access.channel_id, before_id=before, limit=limit
    )
    last = found[-1].id if more and found else None
    next_cursor = cursors.next_by_id(core.secret_key, "studio-sessions", access.channel_id, last)
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
