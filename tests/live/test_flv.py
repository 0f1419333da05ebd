"""FLV header and tags: the byte layout ffmpeg's flv demuxer expects."""

from __future__ import annotations

import struct

import pytest

from stagecast.live.flv import header as flv_header
from stagecast.live.flv import tag as flv_tag


def test_header_flags_and_previous_tag_size_zero() -> None:
    """The 13-byte header says FLV v1, the audio/video flags, offset 9 and PreviousTagSize0."""
    assert flv_header(has_audio=True, has_video=True) == b"FLV\x01\x05" + struct.pack(">II", 9, 0)
    assert flv_header(has_audio=False, has_video=True)[4] == 0x01
    assert flv_header(has_audio=True, has_video=False)[4] == 0x04


def test_tag_layout_with_the_upper_timestamp_byte_and_trailer() -> None:
    """Type, 24-bit size, 24-bit time + upper byte, stream 0, body, then 11 + size."""
    tag = flv_tag(9, 0x12345678, b"body")
    assert tag == (
        b"\x09" + b"\x00\x00\x04" + b"\x34\x56\x78" + b"\x12" + b"\x00\x00\x00"
        + b"body" + struct.pack(">I", 15)
    )  # fmt: skip


def test_timestamps_past_32_bits_wrap_as_flv_requires() -> None:
    """FLV time is 32-bit: a 64-bit millisecond count is taken modulo 2^32."""
    assert flv_tag(8, (1 << 32) + 5, b"")[4:8] == b"\x00\x00\x05\x00"


@pytest.mark.parametrize(("tag_type", "stamp", "size"), [(7, 0, 0), (8, -1, 0), (9, 0, 0x1000000)])
def test_invalid_tags_are_refused(tag_type: int, stamp: int, size: int) -> None:
    """Unknown types, negative times and bodies over 2^24-1 bytes raise ValueError."""
    with pytest.raises(ValueError, match="FLV"):
        flv_tag(tag_type, stamp, bytes(size))
