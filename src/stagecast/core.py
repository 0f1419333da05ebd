"""The shared resources of one process, which every domain takes as arguments.

``Core`` holds what every domain needs (settings, database, bus, rate limiter, Redis). The
components each domain builds on it are fields of the typed ``stagecast.runtime.Runtime``,
made in one place in the order that function states; handlers reach the core through
``core_of`` (``CoreDep``) and their own domain's component through that domain's dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from stagecast.bus import Bus
from stagecast.config import Settings
from stagecast.db import Database
from stagecast.ratelimit import RateLimiter


@dataclass
class Core:
    """Settings plus the shared resources the app's lifespan opened."""

    settings: Settings
    db: Database
    bus: Bus
    limiter: RateLimiter
    redis: Redis | None = None

    @property
    def secret_key(self) -> str:
        """Return the secret that signs cursors and playback tokens."""
        assert self.settings.secret_key, "create_app requires a secret key"
        return self.settings.secret_key


class HasCore(Protocol):
    """The part of the process's runtime every handler may read."""

    core: Core


def core_of(connection: HTTPConnection) -> Core:
    """Return the process's ``Core`` from a request or WebSocket."""
    runtime: HasCore = connection.app.state.runtime
    return runtime.core


async def get_core(connection: HTTPConnection) -> Core:
    """FastAPI dependency: the process's ``Core`` (works for HTTP and WebSocket).

    Async on purpose: FastAPI runs synchronous dependencies in its thread pool.
    """
    return core_of(connection)
