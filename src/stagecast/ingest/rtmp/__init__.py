"""The RTMP publish server (OBS, ffmpeg): handshake, chunk stream, AMF0 commands, FLV output."""

from stagecast.ingest.rtmp.flv import flv_header, flv_metadata_tag, flv_tag
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
    "flv_header",
    "flv_metadata_tag",
    "flv_tag",
]
