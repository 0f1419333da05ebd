"""``GET /api/v1/vods/{vod_id}/chat``: the chat of a VOD's broadcast, for its chat replay.

It joins two domains, so it lives here, above both: the VOD decides who may see it
(``vod.hls.watchable``, the rule of the watch page and of playback: private and unlisted VODs
need their people or a token, ``?token=``), the chat serves the page (``chat.replay``) and
adds its own rule (no anonymous readers where the chat allows none). The caller is identified
only when one of those needs to know who it is.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from stagecast.auth.deps import CoreDep, identify
from stagecast.auth.service import Account
from stagecast.chat import replay
from stagecast.chat.router import ChatDep
from stagecast.chat.schemas import ReplayMessageOut, ReplayPage
from stagecast.core import Core
from stagecast.errors import error_responses
from stagecast.vod.hls import watchable
from stagecast.vod.runtime import VodsDep

router = APIRouter(tags=["chat"])

VodId = Annotated[int, Path(ge=1, le=2**63 - 1)]
# Read as text and checked by ``chat.replay`` (lengths too), so a bad value is a 400 with a
# message rather than a validation error.
Start = Annotated[
    str | None,
    Query(
        alias="from",
        description="Seconds into the broadcast, 0 or more (a decimal number); default 0.",
    ),
]
Limit = Annotated[
    str | None,
    Query(description=f"Page size, 1-{replay.MAX_LIMIT}; default {replay.DEFAULT_LIMIT}."),
]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page (opaque).")]
Token = Annotated[str | None, Query(max_length=1024, description="The VOD's playback token.")]


class _Caller:
    """The request's account, looked up once and only if asked for."""

    def __init__(self, request: Request, core: Core) -> None:
        self._request = request
        self._core = core
        self._known = False
        self._account: Account | None = None

    async def __call__(self) -> Account | None:
        if not self._known:
            self._account = (await identify(self._request, self._core)).account
            self._known = True
        return self._account


@router.get(
    "/api/v1/vods/{vod_id}/chat", response_model=ReplayPage, responses=error_responses(400, 401)
)
async def vod_chat(
    request: Request,
    vod_id: VodId,
    core: CoreDep,
    vods: VodsDep,
    chat: ChatDep,
    start: Start = None,
    limit: Limit = None,
    cursor: Cursor = None,
    token: Token = None,
) -> ReplayPage:
    """Return the chat of the VOD's broadcast from ``from`` seconds on, in media-time order.

    Keyset-paged: pass ``next_cursor`` back as ``cursor`` (with the same ``from``) for the
    next page. Messages deleted by moderators and messages held for review are never listed.
    404 for a VOD you may not watch (unknown, deleted, private, unlisted without its link);
    401 where the channel's chat is closed to anonymous readers; 400 for a bad ``from``,
    ``limit`` or ``cursor``.
    """
    seconds = replay.parse_start(start)
    size = replay.parse_limit(limit)
    caller = _Caller(request, core)
    found, _ = await watchable(core, vods.lookups, vod_id, token, caller)
    await replay.require_reader(chat, found.channel_id, caller)
    page = await replay.page(
        chat.db,
        core.secret_key,
        scope=found.id,
        session_id=found.session_id,
        start=seconds,
        limit=size,
        cursor=cursor,
    )
    return ReplayPage(
        items=[ReplayMessageOut.of(m) for m in page.items],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
