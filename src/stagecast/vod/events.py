"""What the VOD domain announces: a VOD is ready to play (topic ``vod.<channel_id>``).

Published after the commit that made it ready; the studio feeds and the webhooks follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stagecast.bus.topics import Topic


@dataclass(frozen=True)
class VodReady:
    """A channel's VOD has been built and can be played."""

    vod_id: int
    session_id: int
    channel_id: int
    duration: float  # seconds
    type: str = "vod.ready"  # what the studio's page switches on


# ``vod.<channel_id>``
VOD_TOPIC: Topic[VodReady] = Topic("vod.{}", VodReady)
