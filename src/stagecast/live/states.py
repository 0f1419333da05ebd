"""The states of a live session, and what the live domain announces when one changes.

``idle`` (an encoder is connected, no segment yet) → ``live`` → ``reconnecting`` (the encoder
left; the grace window runs) → ``live`` again or ``ended``. The database holds the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from stagecast.bus import Bus
from stagecast.bus.topics import Topic


class SessionState(StrEnum):
    """Where a live session is in its life."""

    IDLE = "idle"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"


# A session in one of these is open: at most one per channel.
ACTIVE = frozenset({SessionState.IDLE, SessionState.LIVE, SessionState.RECONNECTING})
# An encoder is connected.
PUBLISHING = frozenset({SessionState.IDLE, SessionState.LIVE})
# Viewers see the channel live (a reconnect is a pause in the broadcast, not its end).
ON_AIR = frozenset({SessionState.LIVE, SessionState.RECONNECTING})


@dataclass(frozen=True)
class StateChanged:
    """A channel's session moved to ``state`` (published after the change is recorded)."""

    state: SessionState
    session_id: int
    slug: str | None = None
    type: str = "state"  # what SSE consumers and the browser switch on


# ``live.<channel_id>``
STATE_TOPIC: Topic[StateChanged] = Topic("live.{}", StateChanged)
# Every channel's changes on one name, for what follows all channels (the slug lookups).
CHANGES_TOPIC: Topic[StateChanged] = Topic("live.changes", StateChanged)


async def announce_state(bus: Bus, changed: StateChanged, channel_id: int) -> None:
    """Publish ``changed`` on the channel's topic and on ``CHANGES_TOPIC``.

    Raises BusUnavailable.
    """
    await bus.publish_many(
        [
            (STATE_TOPIC.name(channel_id), STATE_TOPIC.encode(changed)),
            (CHANGES_TOPIC.name(), CHANGES_TOPIC.encode(changed)),
        ]
    )
