"""The live side of a process: media storage, session hooks, the session manager, lookups.

``open_live`` builds them without starting anything, so the domains built on live sessions
(VODs, webhooks, the studio) can register their hooks first; ``start_live`` then starts the
manager, whose first sweep may end sessions a crash left behind (running every end hook).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from fastapi import Depends
from starlette.requests import HTTPConnection

from stagecast.core import Core
from stagecast.live.holds import Holds
from stagecast.live.hooks import SessionHooks
from stagecast.live.lookups import Lookups
from stagecast.live.manager import LiveManager
from stagecast.live.storage import LocalStorage, SegmentStorage


@dataclass
class Live:
    """This process's live components."""

    storage: SegmentStorage
    hooks: SessionHooks
    manager: LiveManager
    lookups: Lookups
    holds: Holds = field(default_factory=Holds)


def open_live(core: Core) -> Live:
    """Build the live components on ``core`` (media under ``<data_dir>/media``); start nothing."""
    storage = LocalStorage(core.settings.data_dir / "media")
    hooks = SessionHooks()
    manager = LiveManager(core.settings, core.db, core.bus, storage, hooks)
    return Live(storage, hooks, manager, Lookups(core.db, core.secret_key))


async def start_live(live: Live, stack: AsyncExitStack) -> None:
    """Start the manager (reconcile, sweep, key watch); close it on shutdown."""
    await live.manager.start()
    stack.push_async_callback(live.manager.close)
    following = await live.lookups.follow(live.manager.bus)

    async def stop_following() -> None:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following

    stack.push_async_callback(stop_following)


class HasLive(Protocol):
    """The part of the process's runtime the live routes read."""

    live: Live


async def live_of(connection: HTTPConnection) -> Live:
    """FastAPI dependency: this process's live components."""
    runtime: HasLive = connection.app.state.runtime
    return runtime.live


LiveDep = Annotated[Live, Depends(live_of)]
