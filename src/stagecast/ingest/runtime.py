"""Start the ingest side of a process: the RTMP server and HTTP push, wired to live sessions."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Protocol

import imageio_ffmpeg
from fastapi import Depends
from starlette.requests import HTTPConnection

from stagecast.core import Core
from stagecast.ingest.publish import RtmpIngest
from stagecast.ingest.push import HttpPushIngest
from stagecast.ingest.rtmp.limits import RtmpLimits
from stagecast.ingest.rtmp.server import RtmpServer
from stagecast.live.runtime import Live

log = logging.getLogger(__name__)


def ffmpeg_binary(configured: str | None) -> str:
    """Return the ffmpeg to run: STAGECAST_FFMPEG, else the one imageio-ffmpeg ships."""
    return configured or imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class Ingest:
    """This process's ingest servers."""

    rtmp: RtmpServer | None  # None in a worker that is not the primary (``serve --workers``)
    http_push: HttpPushIngest


async def start_ingest(core: Core, live: Live, stack: AsyncExitStack) -> Ingest:
    """Start HTTP push ingest and the RTMP server; stop them (first) on shutdown."""
    settings = core.settings
    push = HttpPushIngest(live.manager, idle_after=max(10.0, 4 * settings.segment_seconds))
    stack.push_async_callback(push.close)
    handler = RtmpIngest(
        core.db,
        live.manager,
        ffmpeg=ffmpeg_binary(settings.ffmpeg),
        segment_seconds=settings.segment_seconds,
    )
    limits = RtmpLimits(
        max_connections_per_address=settings.rtmp_max_connections_per_address,
        max_pending_connections=settings.rtmp_max_pending_connections,
    )
    if settings.worker_index:  # another worker of ``serve --workers`` runs the RTMP server
        return Ingest(None, push)
    server = RtmpServer(handler, host=settings.rtmp_host, port=settings.rtmp_port, limits=limits)
    await server.start()
    if settings.rtmp_port == 0:  # a free port was picked: say which, e.g. in the OBS URL
        settings.rtmp_port = server.port
    stack.push_async_callback(server.close)
    log.info("RTMP ingest on rtmp://%s:%d/live", settings.rtmp_host, server.port)
    return Ingest(server, push)


class HasIngest(Protocol):
    """The part of the process's runtime the ingest routes read."""

    ingest: Ingest


async def ingest_of(connection: HTTPConnection) -> Ingest:
    """FastAPI dependency: this process's ingest servers."""
    runtime: HasIngest = connection.app.state.runtime
    return runtime.ingest


IngestDep = Annotated[Ingest, Depends(ingest_of)]
