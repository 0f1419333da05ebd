"""``MediaEdge``: viewer media GETs under ``/hls/`` answered in front of the framework.

A player asks for a playlist every second or two (several times a second with LL-HLS) and for
every segment and part; on the framework's path each request cost route matching, dependency
resolution and response classes several times over the work of the answer itself. This
middleware takes GET and HEAD under ``/hls/`` and hands a parsed ``MediaRequest`` to the
domain that owns the path (``/hls/vods/...``: VODs; any other ``/hls/<slug>/...``: live), then
sends its ``Reply``. Errors render as everywhere else (``web.errors.error_response``). Anything
else, and anything before the runtime is up, goes on to the app.
"""

from __future__ import annotations

import logging
from typing import Protocol

import httpx
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from stagecast.auth.deps import identify
from stagecast.auth.service import Account
from stagecast.core import Core
from stagecast.errors import StagecastError
from stagecast.fastpath import MediaRequest, send_reply
from stagecast.live import delivery
from stagecast.live.runtime import Live
from stagecast.vod import hls as vod_hls
from stagecast.vod.runtime import Vods
from stagecast.web.errors import error_response
from stagecast.web.workers import Primary

log = logging.getLogger(__name__)

_PREFIX = "/hls/"
_VOD_PREFIX = "/hls/vods/"


class _Runtime(Protocol):
    """The part of the process's runtime the media fast path reads."""

    core: Core
    live: Live
    primary: Primary | None
    vod: Vods


class _Route:
    """What ``HttpMetrics`` labels a fast-path request with (it reads ``scope["route"].path``)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_LIVE_ROUTE = _Route("/hls/{slug}/...")
_VOD_ROUTE = _Route("/hls/vods/{vod_id}/...")


class MediaEdge:
    """ASGI middleware: answer viewer media GETs without the framework (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``/hls/`` GETs and HEADs; pass everything else on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runtime: _Runtime | None = getattr(scope["app"].state, "runtime", None)
        if runtime is not None and runtime.primary is not None and _primarys(scope):
            await _forward(runtime.primary, scope, receive, send)
            return
        if (
            runtime is None
            or not scope["path"].startswith(_PREFIX)
            or scope["method"] not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        is_vod = scope["path"].startswith(_VOD_PREFIX)
        scope["route"] = _VOD_ROUTE if is_vod else _LIVE_ROUTE
        try:
            request = MediaRequest.of(scope)

            async def who() -> Account | None:
                return (await identify(HTTPConnection(scope), runtime.core)).account

            if is_vod:
                reply = await vod_hls.answer(
                    runtime.core, runtime.live, runtime.vod.lookups, request, who
                )
            else:
                reply = await delivery.answer(
                    runtime.live, request, who, limiter=runtime.core.limiter
                )
            await send_reply(reply, send, head=request.head)
        except StagecastError as exc:  # raised before the first byte of an answer is sent
            response = error_response(
                exc.status, exc.code, exc.message, retry_after=exc.retry_after
            )
            await response(scope, receive, send)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await error_response(500, "internal", "internal error")(scope, receive, send)


def _primarys(scope: Scope) -> bool:
    """Tell whether only the primary worker can answer: HTTP push uploads (the session they
    feed lives there). The live edge is served by every worker from what the primary shares."""
    path: str = scope["path"]
    return path.startswith("/ingest/")


async def _forward(primary: Primary, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        await primary.forward(scope, receive, send)
    except (OSError, httpx.HTTPError) as exc:
        log.warning("the primary worker did not answer %s: %s", scope["path"], exc)
        await error_response(503, "unavailable", "the stream's worker is not answering")(
            scope, receive, send
        )
