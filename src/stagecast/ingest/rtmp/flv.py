"""FLV, the container RTMP media already speaks: header and tags for ffmpeg's ``-f flv`` input.

An RTMP audio (8), video (9) or data (18) message body is exactly the body of the FLV tag of
the same type, so a publisher's messages become a file (or a pipe into ffmpeg) by prefixing
``flv_header`` and wrapping each body with ``flv_tag``. Enhanced RTMP bodies (FourCC video
headers for HEVC and AV1) pass through unchanged; ffmpeg reads them as enhanced FLV.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from stagecast.ingest.rtmp import amf0
from stagecast.live import flv

TAG_AUDIO: Final = flv.AUDIO
TAG_VIDEO: Final = flv.VIDEO
TAG_SCRIPT: Final = flv.SCRIPT

# The writer lives with the live pipeline, which feeds ffmpeg; these are its RTMP-side names.
flv_tag = flv.tag


def flv_header(has_audio: bool, has_video: bool) -> bytes:
    """Return the 9-byte FLV file header followed by PreviousTagSize0 (13 bytes in all)."""
    return flv.header(has_audio=has_audio, has_video=has_video)


def flv_metadata_tag(metadata: Mapping[str, object], timestamp_ms: int = 0) -> bytes:
    """Return the ``onMetaData`` script tag carrying ``metadata`` as an ECMA array.

    Raises ``TypeError`` or ``ValueError`` (from ``amf0.encode``) for values AMF0 cannot hold.
    """
    body = amf0.encode("onMetaData") + amf0.encode_ecma_array(metadata)
    return flv_tag(TAG_SCRIPT, timestamp_ms, body)
