"""Start the live side of a process: the session manager and its background work."""

from __future__ import annotations

from contextlib import AsyncExitStack

from stagecast.core import Core
from stagecast.live.hooks import SessionHooks
from stagecast.live.lookups import Lookups
from stagecast.live.manager import LiveManager
from stagecast.live.storage import SegmentStorage


async def start(core: Core, stack: AsyncExitStack) -> None:
    """Create the manager, reconcile this node's orphaned sessions, and close it on shutdown."""
    manager = LiveManager(
        core.settings,
        core.db,
        core.bus,
        core.get(SegmentStorage),  # type: ignore[type-abstract]
        core.get(SessionHooks),
    )
    await manager.start()
    core.register(manager)
    core.register(Lookups(core.db, core.secret_key))
    stack.push_async_callback(manager.close)
