"""What the VOD domain announces on the bus.

- ``vod.<channel_id>`` (``VodReady``): a VOD is ready to play; the studio feeds and the
  webhooks follow it.
- ``vods.changed`` (``VodChanged``, one topic for every VOD): a VOD became ready, was edited
  (title, description, visibility) or was deleted; every process drops what it cached about
  that VOD for playback (``vod.lookups``).

Both are published after the commit that made the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stagecast.bus.topics import Topic

Change = Literal["ready", "updated", "deleted"]


@dataclass(frozen=True)
class VodReady:
    """A channel's VOD has been built and can be played."""

    vod_id: int
    session_id: int
    channel_id: int
    duration: float  # seconds
    type: str = "vod.ready"  # what the studio's page switches on


@dataclass(frozen=True)
class VodChanged:
    """What playback knows of VOD ``vod_id`` is out of date (``change`` says why)."""

    vod_id: int
    change: Change


# ``vod.<channel_id>``
VOD_TOPIC: Topic[VodReady] = Topic("vod.{}", VodReady)
# One fixed name: every process follows every VOD's changes.
VOD_CHANGED_TOPIC: Topic[VodChanged] = Topic("vods.changed", VodChanged)
