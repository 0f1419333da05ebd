"""Start the ingest side of a process: the RTMP server and HTTP push, wired to live sessions."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import imageio_ffmpeg

from stagecast.core import Core
from stagecast.ingest.http import HttpPushIngest
from stagecast.ingest.publish import RtmpIngest
from stagecast.ingest.rtmp.server import RtmpServer
from stagecast.live.manager import LiveManager

log = logging.getLogger(__name__)


def ffmpeg_binary(configured: str | None) -> str:
    """Return the ffmpeg to run: STAGECAST_FFMPEG, else the one imageio-ffmpeg ships."""
    return configured or imageio_ffmpeg.get_ffmpeg_exe()


async def start(core: Core, stack: AsyncExitStack) -> None:
    """Start HTTP push ingest and the RTMP server; stop them (first) on shutdown."""
    settings = core.settings
    manager = core.get(LiveManager)
    push = HttpPushIngest(manager, idle_after=max(10.0, 4 * settings.segment_seconds))
    core.register(push)
    stack.push_async_callback(push.close)
    handler = RtmpIngest(
        core.db,
        manager,
        ffmpeg=ffmpeg_binary(settings.ffmpeg),
        scratch=settings.data_dir / "scratch",
        segment_seconds=settings.segment_seconds,
    )
    server = RtmpServer(handler, host=settings.rtmp_host, port=settings.rtmp_port)
    await server.start()
    if settings.rtmp_port == 0:  # a free port was picked: say which, e.g. in the OBS URL
        settings.rtmp_port = server.port
    core.register(server)
    stack.push_async_callback(server.close)
    log.info("RTMP ingest on rtmp://%s:%d/live", settings.rtmp_host, server.port)
