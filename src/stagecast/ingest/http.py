"""HTTP segment push: encoders PUT CMAF init and media segments (ffmpeg ``-method PUT``).

``PUT /ingest/<channel>/<rendition>/<file>`` with the stream key as Bearer token. The server
builds every path itself; the client's file name only tells a playlist (ignored: we write our
own), an init segment, or a media segment apart, and the bytes must say the same (magic
check). Bodies are size-limited and must arrive within a deadline. A pusher that goes quiet is
treated like an RTMP publisher that disconnected.

A live pusher's requests are recognised in memory (``stagecast.ingest.push``): a database
stall mid-stream does not refuse its segments.
"""

from __future__ import annotations

import asyncio
import logging
import re

from fastapi import APIRouter, Request, Response

from stagecast.auth.deps import CoreDep
from stagecast.channels.service import KeyMatch, verify_stream_key
from stagecast.core import Core
from stagecast.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMedia,
    error_responses,
)
from stagecast.ingest.runtime import Ingest, IngestDep
from stagecast.live.fmp4 import MediaError, looks_like_init, looks_like_segment

log = logging.getLogger(__name__)

router = APIRouter(tags=["ingest"])

_RENDITION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_SEGMENT_BYTES = 32 * 1024 * 1024
MAX_INIT_BYTES = 1024 * 1024
MAX_PLAYLIST_BYTES = 256 * 1024
BODY_DEADLINE = 30.0


async def _pusher_of(
    request: Request, core: Core, ingest: Ingest, slug: str
) -> tuple[KeyMatch, str]:
    """Return the channel the Bearer stream key opens (it must be ``slug``) and the key.

    Raises 401/404. A live pusher's own key is recognised without asking the database.
    """
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    key = value.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("send the stream key as 'Authorization: Bearer <stream key>'")
    known = ingest.http_push.known(slug, key)
    if known is not None:
        return known, key
    match = await verify_stream_key(core.db, key)
    if match is None:
        raise Unauthorized("invalid stream key")
    if match.slug != slug:
        raise NotFound("channel not found")
    return match, key


async def read_body(request: Request, limit: int, deadline: float = BODY_DEADLINE) -> bytes:
    """Read the body: at most ``limit`` bytes, all of it within ``deadline`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BadRequest(f"body not received within {deadline:.0f} s") from exc
    return b"".join(chunks)


@router.put(
    "/ingest/{slug}/{rendition}/{filename}",
    status_code=204,
    responses=error_responses(400, 401, 403, 409, 413, 415),
)
async def push(
    slug: str, rendition: str, filename: str, request: Request, core: CoreDep, ingest: IngestDep
) -> Response:
    """Accept one pushed file: init segment, media segment, or (ignored) playlist."""
    match, key = await _pusher_of(request, core, ingest, slug)
    if not _RENDITION.fullmatch(rendition) or not _FILENAME.fullmatch(filename):
        raise NotFound("rendition or file name not allowed")
    if filename.endswith(".m3u8"):
        await read_body(request, MAX_PLAYLIST_BYTES)
        return Response(status_code=204)
    pushers = ingest.http_push
    is_init = filename.endswith(".mp4")
    data = await read_body(request, MAX_INIT_BYTES if is_init else MAX_SEGMENT_BYTES)
    # Bytes that are not what the name says, or that could not play, never open a session.
    if not (looks_like_init(data) if is_init else looks_like_segment(data)):
        raise UnsupportedMedia("not a CMAF init (.mp4) or media segment (.m4s)")
    try:
        pushers.check_opening(match.channel_id, rendition, data, is_init=is_init)
    except MediaError as exc:
        raise UnsupportedMedia(f"{'init' if is_init else 'segment'} refused: {exc}") from exc
    pusher = await pushers.session_for(match, key)
    try:
        if is_init:
            await pushers.init(pusher, rendition, data)
        elif not await pusher.session.add_segment(rendition, data):
            raise UnsupportedMedia(
                "segment refused: send the init segment first, or check the media"
            )
    except MediaError as exc:
        raise UnsupportedMedia(f"unreadable media: {exc}") from exc
    except OSError as exc:  # the media disk: nothing was listed, the encoder may send it again
        log.warning("session %s: could not store pushed %s: %s", pusher.session.id, filename, exc)
        raise ServiceUnavailable("media storage unavailable, try again") from exc
    return Response(status_code=204)


@router.delete(
    "/ingest/{slug}/{rendition}/{filename}",
    status_code=204,
    responses=error_responses(401, 403),
)
async def delete(
    slug: str, rendition: str, filename: str, request: Request, core: CoreDep, ingest: IngestDep
) -> Response:
    """Acknowledge an encoder deleting an old segment: the archive keeps everything."""
    await _pusher_of(request, core, ingest, slug)
    return Response(status_code=204)
