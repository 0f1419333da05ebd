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
from dataclasses import dataclass, field
from typing import Literal

from stagecast.live.boxes import Box, MediaError, first_box, iter_boxes
from stagecast.live.codecs import audio_entry, video_codec

__all__ = [
    "InitInfo",
    "MediaError",
    "SegmentInfo",
    "TrackInfo",
    "looks_like_init",
    "looks_like_segment",
    "parse_init",
    "parse_segment",
]

# A 2 s segment holds about 60 video and 94 audio samples; this only stops a trun without
# per-sample fields from claiming billions of samples in a few bytes.
MAX_SAMPLES_PER_SEGMENT = 1 << 16
_NON_SYNC_SAMPLE = 0x0001_0000  # sample_is_non_sync_sample in the sample flags (14496-12 8.8.3.1)
_SEGMENT_FIRST_BOXES = (b"styp", b"moof", b"sidx")


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


def looks_like_init(data: bytes) -> bool:
    """Say whether ``data`` starts with a sane ``ftyp`` box (a magic-byte check, not a parse)."""
    box = first_box(data)
    return box is not None and box.kind == b"ftyp" and box.size >= 8


def looks_like_segment(data: bytes) -> bool:
    """Say whether ``data`` starts like a media segment (a magic-byte check, not a parse).

    A segment starts with ``styp`` or ``moof``, or with ``sidx`` boxes followed by ``moof``.
    """
    boxes = iter_boxes(data, 0, len(data))
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
    moov = next((b for b in iter_boxes(data, 0, len(data)) if b.kind == b"moov"), None)
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


def _parse_trak(trak: Box, trex: dict[int, Box]) -> TrackInfo | None:
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
            codec=video_codec(entry),
            width=entry.u16(24),
            height=entry.u16(26),
            sample_rate=None,
            channels=None,
            default_sample_duration=duration,
            default_sample_size=size,
            default_sample_flags=flags,
        )
    sample_rate, channels, codec = audio_entry(entry, timescale)
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
    for box in iter_boxes(data, 0, len(data)):
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


def _read_traf(traf: Box, tracks: dict[int, _Track]) -> None:
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
    trun: Box, track: _Track, duration: int | None, size: int | None, flags: int | None
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
