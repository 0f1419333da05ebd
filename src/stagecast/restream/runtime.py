"""Start the restreamer of a process: it takes the listed segments of the sessions held here."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Annotated, Protocol

import imageio_ffmpeg
from fastapi import Depends
from starlette.requests import HTTPConnection

from stagecast.core import Core
from stagecast.live.runtime import Live
from stagecast.restream.runner import Restreamer


async def start_restream(core: Core, live: Live, stack: AsyncExitStack) -> Restreamer:
    """Hook the restreamer into the live sessions and follow the bus until shutdown.

    Call it before ``start_live``: a session resumed at start-up restreams too.
    """
    ffmpeg = core.settings.ffmpeg or imageio_ffmpeg.get_ffmpeg_exe()
    restreamer = Restreamer(core.db, core.bus, ffmpeg)
    live.hooks.on_listed.append(restreamer.listed)
    live.hooks.on_closed.append(restreamer.closed)
    await restreamer.start()
    stack.push_async_callback(restreamer.close)
    return restreamer


class HasRestream(Protocol):
    """The part of the process's runtime the restream routes read."""

    restream: Restreamer


async def restream_of(connection: HTTPConnection) -> Restreamer:
    """FastAPI dependency: this process's restreamer."""
    runtime: HasRestream = connection.app.state.runtime
    return runtime.restream


RestreamDep = Annotated[Restreamer, Depends(restream_of)]
