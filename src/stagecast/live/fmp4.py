"""Read what the playlists need from CMAF / fragmented-MP4 init and media segments.

Pure Python over ISO BMFF (ISO/IEC 14496-12) boxes. Nothing here trusts a size: every box must
fit inside its parent and the buffer, every table must fit inside its box, and only a fixed set
of known paths is entered (``moov/trak/mdia/minf/stbl/stsd``, ``moov/mvex``, ``moof/traf``),
so nesting depth is bounded by construction and work is linear in the input size. Any
malformed input raises ``MediaError`` and nothing else.

Times are seconds, sizes bytes. Codec strings follow RFC 6381 and ISO/IEC 14496-15 Annex E.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

# A 2 s segment holds about 60 video and 94 audio samples; this only stops a trun without
# per-sample fields from claiming billions of samples in a few bytes.
MAX_SAMPLES_PER_SEGMENT = 1 << 16
_NON_SYNC_SAMPLE = 0x0001_0000  # sample_is_non_sync_sample in the sample flags (14496-12 8.8.3.1)
_SEGMENT_FIRST_BOXES = (b"styp", b"moof", b"sidx")


class MediaError(ValueError):
    """The bytes are not a usable fMP4 init or media segment; the message says why."""


@dataclass(frozen=True)
class TrackInfo:
    """One audio or video track of an init segment.

    ``default_sample_*`` come from the track's ``trex`` box (durations in ``timescale`` units,
    sizes in bytes, flags as in ISO/IEC 14496-12 8.8.3.1); None when the track has no ``trex``.
    """

    track_id: int
    kind: Literal["video", "audio"]
    timescale: int
    codec: str
    width: int | None
    height: int | None
    sample_rate: int | None
    channels: int | None
    default_sample_duration: int | None
    default_sample_size: int | None = None
    default_sample_flags: int | None = None


@dataclass(frozen=True)
class InitInfo:
    """The audio and video tracks of an init segment (other tracks are ignored)."""

    tracks: tuple[TrackInfo, ...]

    @property
    def codecs(self) -> str:
        """Return the RFC 6381 ``CODECS`` value: video codecs first, then audio, no repeats."""
        ordered = [t.codec for t in self.tracks if t.kind == "video"]
        ordered += [t.codec for t in self.tracks if t.kind == "audio"]
        return ",".join(dict.fromkeys(ordered))

    @property
    def video(self) -> TrackInfo | None:
        """Return the first video track, if any."""
        return next((t for t in self.tracks if t.kind == "video"), None)

    @property
    def audio(self) -> TrackInfo | None:
        """Return the first audio track, if any."""
        return next((t for t in self.tracks if t.kind == "audio"), None)


@dataclass(frozen=True)
class SegmentInfo:
    """Timing of one media segment, measured on its main track (video if present, else audio).

    ``duration`` and ``start_time`` are seconds (``start_time`` is the main track's ``tfdt``
    over its timescale); ``track_durations`` maps every known track id in the segment to its
    summed sample durations in seconds; ``byte_size`` is the whole segment in bytes.
    """

    duration: float
    start_time: float
    video_frames: int
    starts_with_keyframe: bool
    byte_size: int
    track_durations: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Box:
    """A box's payload, ``data[start:end]``; every read is checked against ``end``."""

    kind: bytes
    data: bytes
    start: int
    end: int

    def _at(self, offset: int, size: int) -> int:
        pos = self.start + offset
        if offset < 0 or pos + size > self.end:
            raise MediaError(f"{self.kind!r} box is too short")
        return pos

    def raw(self, offset: int, size: int) -> bytes:
        pos = self._at(offset, size)
        return self.data[pos : pos + size]

    def u8(self, offset: int) -> int:
        return self.data[self._at(offset, 1)]

    def u16(self, offset: int) -> int:
        return int.from_bytes(self.raw(offset, 2))

    def u32(self, offset: int) -> int:
        return int.from_bytes(self.raw(offset, 4))

    def u64(self, offset: int) -> int:
        return int.from_bytes(self.raw(offset, 8))

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def version(self) -> int:
        return self.u8(0)

    @property
    def flags(self) -> int:
        return self.u32(0) & 0xFFFFFF

    def children(self, skip: int = 0) -> Iterator[_Box]:
        """Iterate the boxes that follow ``skip`` payload bytes (sample entries have a prefix)."""
        self._at(skip, 0)
        return _iter_boxes(self.data, self.start + skip, self.end)

    def child(self, kind: bytes, skip: int = 0) -> _Box | None:
        return next((box for box in self.children(skip) if box.kind == kind), None)

    def need(self, kind: bytes) -> _Box:
        box = self.child(kind)
        if box is None:
            raise MediaError(f"{self.kind!r} box has no {kind!r} box")
        return box


def _iter_boxes(data: bytes, pos: int, end: int) -> Iterator[_Box]:
    """Iterate the boxes in ``data[pos:end]``; refuse any box that does not fit."""
    while pos < end:
        if end - pos < 8:
            raise MediaError("truncated box header")
        size = int.from_bytes(data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            if end - pos < 16:
                raise MediaError(f"truncated 64-bit size of {kind!r} box")
            size = int.from_bytes(data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = end - pos  # "extends to the end of the file" (14496-12 4.2)
        if kind == b"uuid":
            header += 16
        if size < header:
            raise MediaError(f"{kind!r} box size {size} is smaller than its header")
        if size > end - pos:
            raise MediaError(f"{kind!r} box size {size} runs past the end of its container")
        yield _Box(kind, data, pos + header, pos + size)
        pos += size


def _first_box(data: bytes) -> _Box | None:
    try:
        return next(_iter_boxes(data, 0, len(data)), None)
    except MediaError:
        return None


def looks_like_init(data: bytes) -> bool:
    """Say whether ``data`` starts with a sane ``ftyp`` box (a magic-byte check, not a parse)."""
    box = _first_box(data)
    return box is not None and box.kind == b"ftyp" and box.size >= 8


def looks_like_segment(data: bytes) -> bool:
    """Say whether ``data`` starts like a media segment (a magic-byte check, not a parse).

    A segment starts with ``styp`` or ``moof``, or with ``sidx`` boxes followed by ``moof``.
    """
    boxes = _iter_boxes(data, 0, len(data))
    try:
        first = next(boxes, None)
        if first is None or first.kind not in _SEGMENT_FIRST_BOXES:
            return False
        if first.kind != b"sidx":
            return True
        # A segment index may come first (one per track, as ffmpeg writes them).
        return next((box.kind == b"moof" for box in boxes if box.kind != b"sidx"), False)
    except MediaError:
        return False


def parse_init(data: bytes) -> InitInfo:
    """Parse an init segment (``ftyp`` + ``moov`` with ``mvex``) into its audio/video tracks.

    Raises MediaError when the bytes are malformed, the movie is not fragmented (no ``mvex``),
    a codec is unsupported, or there is no audio or video track.
    """
    moov = next((b for b in _iter_boxes(data, 0, len(data)) if b.kind == b"moov"), None)
    if moov is None:
        raise MediaError("init segment has no moov box")
    mvex = moov.child(b"mvex")
    if mvex is None:
        raise MediaError("moov has no mvex box: not a fragmented MP4")
    trex = {box.u32(4): box for box in mvex.children() if box.kind == b"trex"}
    tracks: list[TrackInfo] = []
    for trak in moov.children():
        if trak.kind == b"trak":
            track = _parse_trak(trak, trex)
            if track is not None:
                tracks.append(track)
    if not tracks:
        raise MediaError("init segment has no audio or video track")
    if len({t.track_id for t in tracks}) != len(tracks):
        raise MediaError("init segment repeats a track id")
    return InitInfo(tuple(tracks))


def _parse_trak(trak: _Box, trex: dict[int, _Box]) -> TrackInfo | None:
    tkhd = trak.need(b"tkhd")
    track_id = tkhd.u32(20 if tkhd.version == 1 else 12)
    mdia = trak.need(b"mdia")
    mdhd = mdia.need(b"mdhd")
    timescale = mdhd.u32(20 if mdhd.version == 1 else 12)
    handler = mdia.need(b"hdlr").raw(8, 4)
    if handler not in (b"vide", b"soun"):
        return None  # subtitles, timed metadata: not part of CODECS or timing
    if timescale == 0:
        raise MediaError(f"track {track_id} has a zero timescale")
    stsd = mdia.need(b"minf").need(b"stbl").need(b"stsd")
    entry = next(stsd.children(8), None)  # FullBox header + entry_count
    if entry is None:
        raise MediaError(f"track {track_id} has no sample entry")
    # trex: track_ID, sample_description_index, then the duration, size and flags defaults.
    ex = trex.get(track_id)
    duration, size, flags = (ex.u32(8), ex.u32(12), ex.u32(16)) if ex else (None, None, None)
    if handler == b"vide":
        return TrackInfo(
            track_id=track_id,
            kind="video",
            timescale=timescale,
            codec=_video_codec(entry),
            width=entry.u16(24),
            height=entry.u16(26),
            sample_rate=None,
            channels=None,
            default_sample_duration=duration,
            default_sample_size=size,
            default_sample_flags=flags,
        )
    sample_rate, channels, codec = _audio_entry(entry, timescale)
    return TrackInfo(
        track_id=track_id,
        kind="audio",
        timescale=timescale,
        codec=codec,
        width=None,
        height=None,
        sample_rate=sample_rate,
        channels=channels,
        default_sample_duration=duration,
        default_sample_size=size,
        default_sample_flags=flags,
    )


_VISUAL_ENTRY = 78  # SampleEntry (8) + VisualSampleEntry fields (70) before child boxes


def _video_codec(entry: _Box) -> str:
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


def _config(entry: _Box, kind: bytes, skip: int) -> _Box:
    box = entry.child(kind, skip)
    if box is None:
        raise MediaError(f"{entry.kind!r} sample entry has no {kind!r} box")
    return box


def _hevc_codec(fourcc: str, hvcc: _Box) -> str:
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


def _av1_codec(av1c: _Box) -> str:
    """Build ``av01.P.LLT.DD`` (the mandatory fields of the AV1 ISOBMFF codecs parameter)."""
    if av1c.u8(0) != 0x81:
        raise MediaError("unsupported av1C version")
    profile_level, bits = av1c.u8(1), av1c.u8(2)
    depth = (12 if bits & 0x20 else 10) if bits & 0x40 else 8
    tier = "H" if bits & 0x80 else "M"
    return f"av01.{profile_level >> 5}.{profile_level & 0x1F:02d}{tier}.{depth:02d}"


_AUDIO_ENTRY = 28  # SampleEntry (8) + AudioSampleEntry fields (20) before child boxes
_SIMPLE_AUDIO = {b"Opus": "opus", b"fLaC": "fLaC", b"ac-3": "ac-3", b"ec-3": "ec-3"}


def _audio_entry(entry: _Box, timescale: int) -> tuple[int, int, str]:
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


def _descriptor(box: _Box, pos: int, end: int) -> tuple[int, int, int]:
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


def _find_descriptor(box: _Box, pos: int, end: int, tag: int) -> tuple[int, int] | None:
    while pos < end:
        found, body, body_end = _descriptor(box, pos, end)
        if found == tag:
            return body, body_end
        pos = body_end
    return None


def _mp4a_codec(esds: _Box) -> str:
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


@dataclass
class _Track:
    """What one segment says about one track, summed over every traf."""

    info: TrackInfo
    ticks: int = 0
    samples: int = 0
    sample_bytes: int = 0
    base_time: int | None = None
    first_flags: int | None = None


def parse_segment(data: bytes, init: InitInfo) -> SegmentInfo:
    """Measure a media segment (one or more ``moof`` + ``mdat`` pairs) against its init.

    Sample durations come from the trun, else the tfhd default, else the trex default.
    Trafs of tracks the init does not describe are skipped. Raises MediaError when the bytes
    are malformed, a duration cannot be known, or the segment holds no audio/video samples.
    """
    tracks = {t.track_id: _Track(t) for t in init.tracks}
    moofs = mdat_bytes = 0
    for box in _iter_boxes(data, 0, len(data)):
        if box.kind == b"moof":
            moofs += 1
            for traf in box.children():
                if traf.kind == b"traf":
                    _read_traf(traf, tracks)
        elif box.kind == b"mdat":
            mdat_bytes += box.size
    if not moofs or not mdat_bytes:
        raise MediaError("segment needs at least one moof and one non-empty mdat")
    if sum(t.sample_bytes for t in tracks.values()) > mdat_bytes:
        raise MediaError("samples claim more bytes than the segment's mdat boxes hold")
    return _summarise(tracks, len(data))


def _summarise(tracks: dict[int, _Track], byte_size: int) -> SegmentInfo:
    present = [t for t in tracks.values() if t.samples]
    main = next((t for t in present if t.info.kind == "video"), None) or next(
        (t for t in present if t.info.kind == "audio"), None
    )
    if main is None:
        raise MediaError("segment has no samples of the init segment's tracks")
    if main.base_time is None:
        raise MediaError(f"track {main.info.track_id} has no tfdt (decode time)")
    if main.ticks == 0:
        raise MediaError("segment has zero duration")
    scale = main.info.timescale
    return SegmentInfo(
        duration=main.ticks / scale,
        start_time=main.base_time / scale,
        video_frames=main.samples if main.info.kind == "video" else 0,
        starts_with_keyframe=not (main.first_flags or 0) & _NON_SYNC_SAMPLE,
        byte_size=byte_size,
        track_durations={t.info.track_id: t.ticks / t.info.timescale for t in present},
    )


def _read_traf(traf: _Box, tracks: dict[int, _Track]) -> None:
    tfhd = traf.need(b"tfhd")
    track = tracks.get(tfhd.u32(4))
    if track is None:
        return
    flags, pos = tfhd.flags, 8
    if flags & 0x01:  # base-data-offset
        pos += 8
    if flags & 0x02:  # sample-description-index
        pos += 4
    info = track.info
    duration, size, sample_flags = (
        info.default_sample_duration,
        info.default_sample_size,
        info.default_sample_flags,
    )
    if flags & 0x08:
        duration, pos = tfhd.u32(pos), pos + 4
    if flags & 0x10:
        size, pos = tfhd.u32(pos), pos + 4
    if flags & 0x20:
        sample_flags = tfhd.u32(pos)
    tfdt = traf.child(b"tfdt")
    if tfdt is not None and track.base_time is None:
        track.base_time = tfdt.u64(4) if tfdt.version == 1 else tfdt.u32(4)
    for trun in traf.children():
        if trun.kind == b"trun":
            _read_trun(trun, track, duration, size, sample_flags)


def _read_trun(
    trun: _Box, track: _Track, duration: int | None, size: int | None, flags: int | None
) -> None:
    tr_flags, count, pos = trun.flags, trun.u32(4), 8
    if tr_flags & 0x01:  # data-offset
        pos += 4
    first_flags: int | None = None
    if tr_flags & 0x04:  # first-sample-flags
        first_flags, pos = trun.u32(pos), pos + 4
    fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if tr_flags & bit]
    width = len(fields)
    if count > MAX_SAMPLES_PER_SEGMENT or track.samples + count > MAX_SAMPLES_PER_SEGMENT:
        raise MediaError(f"trun claims {count} samples")
    if count * width * 4 > trun.size - pos:
        raise MediaError("trun sample table runs past its box")
    table = struct.unpack_from(f">{count * width}I", trun.data, trun.start + pos)

    def column(bit: int) -> tuple[int, ...] | None:
        return table[fields.index(bit) :: width] if bit in fields else None

    durations, sizes, all_flags = column(0x100), column(0x200), column(0x400)
    if durations is not None:
        track.ticks += sum(durations)
    elif count:
        if duration is None:
            raise MediaError(f"track {track.info.track_id} has no sample duration")
        track.ticks += count * duration
    track.sample_bytes += sum(sizes) if sizes is not None else count * (size or 0)
    if count and track.samples == 0:
        if first_flags is None:
            first_flags = all_flags[0] if all_flags else flags
        track.first_flags = first_flags
    track.samples += count
