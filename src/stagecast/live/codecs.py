"""RFC 6381 codec strings from ISO BMFF sample entries (ISO/IEC 14496-15 Annex E for HEVC).

Video: avc1/avc3, hvc1/hev1, av01, vp09. Audio: mp4a (from ``esds``), Opus, fLaC, AC-3, E-AC-3.
Anything else raises ``MediaError``.
"""

from __future__ import annotations

from stagecast.live.boxes import Box, MediaError

_VISUAL_ENTRY = 78  # SampleEntry (8) + VisualSampleEntry fields (70) before child boxes


def video_codec(entry: Box) -> str:
    fourcc = entry.kind.decode("latin-1")
    if entry.kind in (b"avc1", b"avc3"):
        avcc = _config(entry, b"avcC", _VISUAL_ENTRY)
        # RFC 6381 3.3: profile_idc, constraint flags, level_idc as six hex digits.
        return f"{fourcc}.{avcc.raw(1, 3).hex()}"
    if entry.kind in (b"hvc1", b"hev1"):
        return _hevc_codec(fourcc, _config(entry, b"hvcC", _VISUAL_ENTRY))
    if entry.kind == b"av01":
        return _av1_codec(_config(entry, b"av1C", _VISUAL_ENTRY))
    if entry.kind == b"vp09":
        vpcc = _config(entry, b"vpcC", _VISUAL_ENTRY)
        return f"vp09.{vpcc.u8(4):02d}.{vpcc.u8(5):02d}.{vpcc.u8(6) >> 4:02d}"
    raise MediaError(f"unsupported video sample entry {entry.kind!r}")


def _config(entry: Box, kind: bytes, skip: int) -> Box:
    box = entry.child(kind, skip)
    if box is None:
        raise MediaError(f"{entry.kind!r} sample entry has no {kind!r} box")
    return box


def _hevc_codec(fourcc: str, hvcc: Box) -> str:
    """Build ``hvc1.[A-C]P.C.TL.B0...`` as ISO/IEC 14496-15 E.3 describes."""
    first = hvcc.u8(1)
    space = ("", "A", "B", "C")[first >> 6]
    tier = "H" if first & 0x20 else "L"
    # The compatibility flags are written in reverse bit order, leading zeros dropped.
    compat = int(f"{hvcc.u32(2):032b}"[::-1], 2)
    constraints = hvcc.raw(6, 6).rstrip(b"\0")
    parts = [fourcc, f"{space}{first & 0x1F}", f"{compat:X}", f"{tier}{hvcc.u8(12)}"]
    parts += [f"{byte:02X}" for byte in constraints]
    return ".".join(parts)


def _av1_codec(av1c: Box) -> str:
    """Build ``av01.P.LLT.DD`` (the mandatory fields of the AV1 ISOBMFF codecs parameter)."""
    if av1c.u8(0) != 0x81:
        raise MediaError("unsupported av1C version")
    profile_level, bits = av1c.u8(1), av1c.u8(2)
    depth = (12 if bits & 0x20 else 10) if bits & 0x40 else 8
    tier = "H" if bits & 0x80 else "M"
    return f"av01.{profile_level >> 5}.{profile_level & 0x1F:02d}{tier}.{depth:02d}"


_AUDIO_ENTRY = 28  # SampleEntry (8) + AudioSampleEntry fields (20) before child boxes
_SIMPLE_AUDIO = {b"Opus": "opus", b"fLaC": "fLaC", b"ac-3": "ac-3", b"ec-3": "ec-3"}


def audio_entry(entry: Box, timescale: int) -> tuple[int, int, str]:
    """Return (sample rate in Hz, channel count, codec string) of an audio sample entry."""
    # QuickTime-flavoured sound descriptions (version 1/2) carry 16/36 more bytes.
    qt_version = entry.u16(8)
    skip = _AUDIO_ENTRY + {0: 0, 1: 16, 2: 36}.get(qt_version, 0)
    channels = entry.u16(16)
    sample_rate = entry.u32(24) >> 16 if qt_version != 2 else 0
    # 16.16 fixed point cannot hold rates above 65535 Hz; the media timescale then does.
    sample_rate = sample_rate or timescale
    if entry.kind == b"mp4a":
        return sample_rate, channels, _mp4a_codec(_config(entry, b"esds", skip))
    codec = _SIMPLE_AUDIO.get(entry.kind)
    if codec is None:
        raise MediaError(f"unsupported audio sample entry {entry.kind!r}")
    return sample_rate, channels, codec


def _descriptor(box: Box, pos: int, end: int) -> tuple[int, int, int]:
    """Read an MPEG-4 descriptor header at ``pos``; return (tag, body start, body end)."""
    tag, length = box.u8(pos), 0
    pos += 1
    for _ in range(4):  # expandable size: at most four 7-bit groups (14496-1 8.3.3)
        byte = box.u8(pos)
        pos += 1
        length = (length << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    if pos + length > end:
        raise MediaError("esds descriptor runs past its container")
    return tag, pos, pos + length


def _find_descriptor(box: Box, pos: int, end: int, tag: int) -> tuple[int, int] | None:
    while pos < end:
        found, body, body_end = _descriptor(box, pos, end)
        if found == tag:
            return body, body_end
        pos = body_end
    return None


def _mp4a_codec(esds: Box) -> str:
    """Build ``mp4a.OO[.A]`` from the esds: object type (hex) and audio object type (decimal)."""
    es = _find_descriptor(esds, 4, esds.size, 0x03)  # ES_Descriptor, after the FullBox header
    if es is None:
        raise MediaError("esds has no ES descriptor")
    pos, es_end = es
    es_flags = esds.u8(pos + 2)
    pos += 3
    if es_flags & 0x80:  # streamDependenceFlag
        pos += 2
    if es_flags & 0x40:  # URL_Flag
        pos += 1 + esds.u8(pos)
    if es_flags & 0x20:  # OCRstreamFlag
        pos += 2
    config = _find_descriptor(esds, pos, es_end, 0x04)
    if config is None:
        raise MediaError("esds has no decoder config descriptor")
    oti = esds.u8(config[0])
    if oti != 0x40:
        return f"mp4a.{oti:02X}"
    dsi = _find_descriptor(esds, config[0] + 13, config[1], 0x05)
    if dsi is None or dsi[1] - dsi[0] < 1:
        raise MediaError("MPEG-4 audio without an AudioSpecificConfig")
    aot = esds.u8(dsi[0]) >> 3
    if aot == 31:  # escape: 32 + the next six bits
        aot = 32 + (((esds.u8(dsi[0]) & 0x07) << 3) | (esds.u8(dsi[0] + 1) >> 5))
    return f"mp4a.40.{aot}"
