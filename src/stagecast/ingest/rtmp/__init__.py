"""The RTMP publish server (OBS, ffmpeg): handshake, chunk stream, AMF0 commands.

Media message bodies are FLV tag bodies; ``stagecast.live.flv`` turns them into FLV for ffmpeg.
"""

from stagecast.ingest.rtmp.handler import (
    BAD_CONNECTION,
    BAD_NAME,
    Publisher,
    PublisherControl,
    PublishHandler,
    PublishRefused,
)
from stagecast.ingest.rtmp.limits import RtmpLimits
from stagecast.ingest.rtmp.server import RtmpServer

__all__ = [
    "BAD_CONNECTION",
    "BAD_NAME",
    "PublishHandler",
    "PublishRefused",
    "Publisher",
    "PublisherControl",
    "RtmpLimits",
    "RtmpServer",
]
