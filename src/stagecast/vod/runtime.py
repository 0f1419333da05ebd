"""The VOD side of a process: the worker that builds and purges VODs, and playback's lookups."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends
from starlette.requests import HTTPConnection

from stagecast.core import Core
from stagecast.live.runtime import Live
from stagecast.vod.lookups import Lookups
from stagecast.vod.worker import VodWorker, start_vod


@dataclass
class Vods:
    """This process's VOD components."""

    worker: VodWorker
    lookups: Lookups


async def start_vods(core: Core, live: Live, stack: AsyncExitStack) -> Vods:
    """Follow VOD changes on the bus, then start the worker (see ``start_vod``).

    Call it before ``start_live``, as ``start_vod`` says. Both stop on shutdown.
    """
    lookups = Lookups(core.db, core.bus, live.storage, media_base_url=core.settings.media_base_url)
    await lookups.start()
    stack.push_async_callback(lookups.close)
    return Vods(start_vod(core, live, stack), lookups)


class HasVods(Protocol):
    """The part of the process's runtime the VOD routes read."""

    vod: Vods


async def vods_of(connection: HTTPConnection) -> Vods:
    """FastAPI dependency: this process's VOD components."""
    runtime: HasVods = connection.app.state.runtime
    return runtime.vod


VodsDep = Annotated[Vods, Depends(vods_of)]
