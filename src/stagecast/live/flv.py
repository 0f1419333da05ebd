"""The few facts about FLV audio/video tag bodies the live pipeline needs, and FLV writing.

An RTMP audio or video message body is exactly an FLV AudioTagData/VideoTagData, so the
session can hand ffmpeg an FLV stream: a header, then one tag per message.
"""

from __future__ import annotations

import struct

AUDIO, VIDEO, SCRIPT = 8, 9, 18

_AAC = 10
_AVC, _HEVC_LEGACY = 7, 12


def is_keyframe(video: bytes) -> bool:
    """Tell whether a video tag body starts a keyframe (legacy and Enhanced RTMP headers)."""
    if not video:
        return False
    frame_type = (video[0] >> 4) & 0x07
    return frame_type == 1


def is_video_config(video: bytes) -> bool:
    """Tell whether a video tag body is a decoder configuration (sequence header / start)."""
    if len(video) < 2:
        return False
    if video[0] & 0x80:  # Enhanced RTMP: packet type in the low nibble; 0 = SequenceStart
        return (video[0] & 0x0F) == 0
    codec = video[0] & 0x0F
    return codec in (_AVC, _HEVC_LEGACY) and video[1] == 0


def is_audio_config(audio: bytes) -> bool:
    """Tell whether an audio tag body is an AAC AudioSpecificConfig (sequence header)."""
    return len(audio) >= 2 and (audio[0] >> 4) == _AAC and audio[1] == 0


_TAG_HEADER_SIZE = 11
_MAX_TAG_BODY = 0xFFFFFF


def header(*, has_audio: bool, has_video: bool) -> bytes:
    """Return the 9-byte FLV file header followed by PreviousTagSize0 (13 bytes in all)."""
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    return b"FLV\x01" + bytes((flags,)) + struct.pack(">II", 9, 0)


def tag(tag_type: int, timestamp_ms: int, payload: bytes) -> bytes:
    """Return one FLV tag (header, ``payload``, PreviousTagSize trailer).

    FLV timestamps are 32-bit, so ``timestamp_ms`` is taken modulo 2^32 (a stream must run
    for 49.7 days to notice). Raises ``ValueError`` for a negative timestamp, an unknown tag
    type or a body over 2^24-1 bytes.
    """
    if tag_type not in (AUDIO, VIDEO, SCRIPT):
        raise ValueError(f"FLV tag type {tag_type} is not audio (8), video (9) or script (18)")
    if timestamp_ms < 0:
        raise ValueError("FLV timestamps are not negative")
    size = len(payload)
    if size > _MAX_TAG_BODY:
        raise ValueError(f"FLV tag body of {size} bytes exceeds 2^24-1")
    stamp = timestamp_ms & 0xFFFFFFFF
    head = (
        bytes((tag_type,))
        + size.to_bytes(3, "big")
        + (stamp & 0xFFFFFF).to_bytes(3, "big")
        + bytes((stamp >> 24,))
        + b"\x00\x00\x00"
    )
    return head + payload + struct.pack(">I", _TAG_HEADER_SIZE + size)
