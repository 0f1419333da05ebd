"""Extension points of the session lifecycle, for domains above ``live`` (the VOD library).

``live`` cannot import the domains built on it, so they register here at start-up. Hooks in
``on_ended`` run inside the transaction that ends a session: what they write commits with the
end or not at all (this is how a VOD job is made durable exactly when a session ends).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class EndedSession:
    """A session that has just ended."""

    session_id: int
    channel_id: int
    title: str
    started_at: datetime | None
    ended_at: datetime
    reason: str


EndHook = Callable[[AsyncConnection, EndedSession], Awaitable[None]]


@dataclass
class SessionHooks:
    """Callbacks the session manager runs at lifecycle points."""

    on_ended: list[EndHook] = field(default_factory=list)
