"""The long-lived resources of one process, reached by handlers through one dependency.

``Core`` holds what every domain needs (settings, database, bus, rate limiter) and a registry
of domain components (the live manager, the chat hub, ...) keyed by their type, so a domain's
router can fetch its own component without the lower layers knowing about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, cast

from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from stagecast.bus import Bus
from stagecast.config import Settings
from stagecast.db import Database
from stagecast.ratelimit import RateLimiter

T = TypeVar("T")


@dataclass
class Core:
    """Settings plus the shared resources the app's lifespan opened."""

    settings: Settings
    db: Database
    bus: Bus
    limiter: RateLimiter
    redis: Redis | None = None
    _components: dict[type, object] = field(default_factory=dict)

    @property
    def secret_key(self) -> str:
        """Return the secret that signs cursors and playback tokens."""
        assert self.settings.secret_key, "create_app requires a secret key"
        return self.settings.secret_key

    def register(self, component: object, *, as_type: type | None = None) -> None:
        """Make ``component`` reachable by its type (or by ``as_type``, e.g. a Protocol)."""
        self._components[as_type or type(component)] = component

    def get(self, kind: type[T]) -> T:
        """Return the registered component of type ``kind``."""
        return cast(T, self._components[kind])


def core_of(connection: HTTPConnection) -> Core:
    """Return the process's ``Core`` from a request or WebSocket."""
    return cast(Core, connection.app.state.core)


async def get_core(connection: HTTPConnection) -> Core:
    """FastAPI dependency: the process's ``Core`` (works for HTTP and WebSocket).

    Async on purpose: FastAPI runs synchronous dependencies in its thread pool.
    """
    return core_of(connection)
