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

from stagecast.config import Settings
from stagecast.core import Core
from stagecast.live.holds import Holds
from stagecast.live.hooks import SessionHooks
from stagecast.live.lookups import Lookups
from stagecast.live.manager import LiveManager, node_name
from stagecast.live.nodes import Nodes
from stagecast.live.objects import Bucket, ObjectStorage, open_store, parse_storage_url
from stagecast.live.sharing import EdgeMirror, EdgeShare
from stagecast.live.storage import LocalStorage, SegmentStorage


@dataclass
class Live:
    """This process's live components."""

    storage: SegmentStorage
    hooks: SessionHooks
    manager: LiveManager
    lookups: Lookups
    holds: Holds = field(default_factory=Holds)
    # The live edges of sessions other nodes hold (None without Redis: there are none).
    edges: EdgeMirror | None = None


def open_storage(settings: Settings) -> SegmentStorage:
    """Return the media storage the settings name: a bucket (through a spool under
    ``<data_dir>/spool``) with ``STAGECAST_STORAGE_URL``, else ``<data_dir>/media``."""
    if not settings.storage_url:
        return LocalStorage(settings.data_dir / "media")
    name, prefix = parse_storage_url(settings.storage_url)
    bucket = Bucket(
        name,
        prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        path_style=settings.s3_path_style,
    )
    return ObjectStorage(
        open_store(bucket, timeout=settings.storage_timeout),
        settings.data_dir / "spool",
        max_bytes=settings.storage_spool_bytes,
        prefix=prefix,
        describe=f"bucket {name}",
    )


def open_live(core: Core) -> Live:
    """Build the live components on ``core`` (media in the storage the settings name); start
    nothing."""
    storage = open_storage(core.settings)
    hooks = SessionHooks()
    spooling = storage.spooling if isinstance(storage, ObjectStorage) else tuple
    nodes = Nodes(
        node_name(core.settings), core.redis, prefix=core.settings.redis_prefix, spooling=spooling
    )
    share = edges = None
    if core.redis is not None:
        prefix = core.settings.redis_prefix
        share = EdgeShare(core.redis, core.bus, prefix=prefix)
        edges = EdgeMirror(core.redis, core.bus, prefix=prefix)
    manager = LiveManager(core.settings, core.db, core.bus, storage, hooks, nodes, share)
    return Live(storage, hooks, manager, Lookups(core.db, core.secret_key), edges=edges)


async def start_live(live: Live, stack: AsyncExitStack) -> None:
    """Start the storage's uploads and the manager (reconcile, sweep, key watch); close both on
    shutdown (the manager first: the last playlists go to the spool before it stops)."""
    await live.storage.start()
    stack.push_async_callback(live.storage.close)
    share = live.manager.deps.share
    if share is not None:
        stack.push_async_callback(share.close)
    if live.edges is not None:
        stack.push_async_callback(live.edges.close)
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
