"""Parsing fMP4 init and media segments: real ffmpeg output, hand-built edge cases, fuzzing."""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import imageio_ffmpeg
import m3u8
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stagecast.live.fmp4 import (
    InitInfo,
    MediaError,
    TrackInfo,
    looks_like_init,
    looks_like_segment,
    parse_init,
    parse_segment,
)

_LAVFI_AV = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"]
_SINE = ["-f", "lavfi", "-i", "sine=sample_rate=48000"]
_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
_HLS = ["-f", "hls", "-hls_time", "2", "-hls_segment_type", "fmp4", "-hls_playlist_type", "vod"]


@dataclass(frozen=True)
class Rendition:
    """What ffmpeg's HLS muxer wrote: the init segment and the segments with their EXTINF."""

    init: bytes
    segments: list[bytes]
    extinf: list[float]


def _hls(directory: Path, *args: str) -> Rendition:
    directory.mkdir(parents=True)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run(
        [*command, *args, *_HLS, str(directory / "index.m3u8")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    playlist = m3u8.load(str(directory / "index.m3u8"))
    return Rendition(
        init=(directory / "init.mp4").read_bytes(),
        segments=[(directory / s.uri).read_bytes() for s in playlist.segments],
        extinf=[s.duration for s in playlist.segments],
    )


@pytest.fixture(scope="module")
def h264_aac(tmp_path_factory: pytest.TempPathFactory) -> Rendition:
    """Six seconds of 640x360 H.264 (2 s GOP) + 48 kHz AAC in three 2 s fMP4 segments."""
    gop = ["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"]
    return _hls(
        tmp_path_factory.mktemp("fmp4") / "av",
        *_LAVFI_AV, *_SINE, "-t", "6", *_X264, *gop, "-c:a", "aac",
    )  # fmt: skip


def _frames_decoded(init: bytes, segment: bytes) -> int:
    with av.open(io.BytesIO(init + segment), mode="r") as container:
        return len(list(container.decode(video=0)))


def _video_level(media: bytes) -> tuple[str | None, int]:
    with av.open(io.BytesIO(media), mode="r") as container:
        context = container.streams.video[0].codec_context
        return context.profile, context.level


@pytest.mark.ffmpeg
def test_init_reports_rfc6381_codecs_and_geometry(h264_aac: Rendition) -> None:
    """The init segment yields avc1.PPCCLL + mp4a.40.2, 640x360, 48 kHz mono, trex defaults."""
    init = parse_init(h264_aac.init)
    assert re.fullmatch(r"avc1\.64[0-9a-f]{4},mp4a\.40\.2", init.codecs), init.codecs
    video, audio = init.video, init.audio
    assert video is not None
    assert audio is not None
    assert (video.width, video.height) == (640, 360)
    assert (audio.sample_rate, audio.channels) == (48000, 1)
    assert audio.timescale == 48000
    assert video.timescale > 0
    assert video.default_sample_duration is not None
    profile, level = _video_level(h264_aac.init + h264_aac.segments[0])
    assert profile == "High"
    assert int(video.codec[-2:], 16) == level  # level_idc as PyAV's decoder reads it


@pytest.mark.ffmpeg
def test_segments_match_ffmpeg_extinf_and_decoded_frames(h264_aac: Rendition) -> None:
    """Each segment lasts what ffmpeg's EXTINF says, starts where the last ended, on a
    keyframe, with as many video samples as PyAV decodes from it."""
    init = parse_init(h264_aac.init)
    infos = [parse_segment(data, init) for data in h264_aac.segments]
    assert len(infos) == 3
    for info, extinf, data in zip(infos, h264_aac.extinf, h264_aac.segments, strict=True):
        assert info.duration == pytest.approx(extinf, abs=0.001)
        assert info.duration == pytest.approx(2.0, abs=0.05)
        assert info.starts_with_keyframe
        assert info.byte_size == len(data)
        assert info.video_frames == _frames_decoded(h264_aac.init, data) == 60
        assert set(info.track_durations) == {t.track_id for t in init.tracks}
        assert info.track_durations[2] == pytest.approx(info.duration, abs=0.1)  # audio
    assert sum(i.duration for i in infos) == pytest.approx(6.0, abs=0.01)
    for before, after in itertools.pairwise(infos):
        assert after.start_time == pytest.approx(before.start_time + before.duration, abs=1e-6)


@pytest.mark.ffmpeg
def test_magic_checks_tell_init_from_segment(h264_aac: Rendition) -> None:
    """looks_like_init / looks_like_segment accept the right kind and refuse the other."""
    assert looks_like_init(h264_aac.init)
    assert not looks_like_segment(h264_aac.init)
    for data in h264_aac.segments:
        assert looks_like_segment(data)
        assert not looks_like_init(data)
    for junk in (b"", b"\x00" * 7, b"GET / HTTP/1.1\r\n\r\n", b"\x00\x00\x00\x08ftyp"[:-1]):
        assert not looks_like_init(junk)
        assert not looks_like_segment(junk)


@pytest.mark.ffmpeg
def test_video_only_rendition(tmp_path: Path) -> None:
    """A video-only rendition has one video track and its codec alone in CODECS."""
    rendition = _hls(
        tmp_path / "v",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "4", *_X264,
        "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
    )  # fmt: skip
    init = parse_init(rendition.init)
    assert init.audio is None
    assert init.video is not None
    assert re.fullmatch(r"avc1\.[0-9a-f]{6}", init.codecs)
    infos = [parse_segment(s, init) for s in rendition.segments]
    assert [i.video_frames for i in infos] == [50, 50]
    assert all(i.starts_with_keyframe for i in infos)
    assert sum(i.duration for i in infos) == pytest.approx(4.0, abs=0.01)


@pytest.mark.ffmpeg
def test_audio_only_rendition(tmp_path: Path) -> None:
    """An audio-only rendition is timed by its audio track; it has no video frames."""
    rendition = _hls(
        tmp_path / "a",
        "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "6", "-c:a", "aac", "-ac", "2",
    )  # fmt: skip
    init = parse_init(rendition.init)
    assert init.video is None
    assert init.audio is not None
    assert init.codecs == "mp4a.40.2"
    assert (init.audio.sample_rate, init.audio.channels) == (44100, 2)
    infos = [parse_segment(s, init) for s in rendition.segments]
    for info, extinf in zip(infos, rendition.extinf, strict=True):
        assert info.video_frames == 0
        assert info.starts_with_keyframe
        assert info.duration == pytest.approx(extinf, abs=0.03)
    assert sum(i.duration for i in infos) == pytest.approx(6.0, abs=0.05)
    for before, after in itertools.pairwise(infos):
        assert after.start_time == pytest.approx(before.start_time + before.duration, abs=1e-6)


@pytest.mark.ffmpeg
def test_hevc_codec_string(tmp_path: Path) -> None:
    """An hvc1 track yields hvc1.<profile>.<reversed compat flags>.L<level>.<constraints>."""
    rendition = _hls(
        tmp_path / "hevc",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "4",
        "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-tag:v", "hvc1",
        "-x265-params", "log-level=error:keyint=50:min-keyint=50:scenecut=0",
    )  # fmt: skip
    init = parse_init(rendition.init)
    profile, level = _video_level(rendition.init + rendition.segments[0])
    assert profile == "Main"
    # Main: compatibility flags 1 and 2 set, which reversed reads 0x6.
    assert re.fullmatch(rf"hvc1\.1\.6\.L{level}(\.[0-9A-F]{{2}})+", init.codecs), init.codecs
    infos = [parse_segment(s, init) for s in rendition.segments]
    assert sum(i.video_frames for i in infos) == 100
    assert sum(i.duration for i in infos) == pytest.approx(4.0, abs=0.01)


@pytest.mark.ffmpeg
def test_av1_and_opus_codec_strings(tmp_path: Path) -> None:
    """AV1 yields av01.P.LLT.DD and Opus yields opus."""
    rendition = _hls(
        tmp_path / "av1",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", *_SINE, "-t", "4",
        "-c:v", "libsvtav1", "-preset", "12", "-g", "50", "-pix_fmt", "yuv420p",
        "-svtav1-params", "log-level=0", "-c:a", "libopus",
    )  # fmt: skip
    init = parse_init(rendition.init)
    assert re.fullmatch(r"av01\.0\.\d\dM\.08,opus", init.codecs), init.codecs
    infos = [parse_segment(s, init) for s in rendition.segments]
    assert all(i.starts_with_keyframe for i in infos)
    assert sum(i.video_frames for i in infos) == 100


@pytest.mark.ffmpeg
def test_many_fragments_in_one_segment(h264_aac: Rendition) -> None:
    """Two moof/mdat pairs in one segment: durations add up, start time is the first's."""
    init = parse_init(h264_aac.init)
    first, second = h264_aac.segments[0], h264_aac.segments[1]
    moof_at = second.index(b"moof") - 4  # drop the second segment's styp and sidx boxes
    joined = parse_segment(first + second[moof_at:], init)
    assert joined.duration == pytest.approx(4.0, abs=0.001)
    assert joined.video_frames == 120
    assert joined.start_time == parse_segment(first, init).start_time
    assert joined.starts_with_keyframe


# -- hand-built boxes --------------------------------------------------------------------------

_VIDEO, _AUDIO = 1, 2  # the track ids ffmpeg gives the h264_aac init segment
_NON_SYNC = 0x0001_0000


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big"), *payload)


def u32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def traf(
    track: int,
    *,
    count: int,
    base: int | None = 0,
    tfhd_duration: int | None = None,
    tfhd_flags: int | None = None,
    durations: list[int] | None = None,
    sample_flags: list[int] | None = None,
    first_flags: int | None = None,
    size: int = 1,
) -> bytes:
    """Build a traf whose trun lists ``count`` samples of ``size`` bytes each."""
    tf_flags, tf_body = 0x020000, u32(track)  # default-base-is-moof
    if tfhd_duration is not None:
        tf_flags, tf_body = tf_flags | 0x08, tf_body + u32(tfhd_duration)
    if tfhd_flags is not None:
        tf_flags, tf_body = tf_flags | 0x20, tf_body + u32(tfhd_flags)
    tr_flags, head, columns = 0x200, u32(count), [[size] * count]
    if first_flags is not None:
        tr_flags, head = tr_flags | 0x04, head + u32(first_flags)
    if durations is not None:
        tr_flags, columns = tr_flags | 0x100, [durations, *columns]
    if sample_flags is not None:
        tr_flags, columns = tr_flags | 0x400, [*columns, sample_flags]
    table = b"".join(u32(*row) for row in zip(*columns, strict=True))
    parts = [full_box(b"tfhd", 0, tf_flags, tf_body)]
    if base is not None:
        parts.append(full_box(b"tfdt", 1, 0, struct.pack(">Q", base)))
    parts.append(full_box(b"trun", 0, tr_flags, head, table))
    return box(b"traf", *parts)


def fragment(*trafs: bytes, mdat: int = 4096) -> bytes:
    return box(b"moof", full_box(b"mfhd", 0, 0, u32(1)), *trafs) + box(b"mdat", b"\0" * mdat)


@pytest.fixture(scope="module")
def init(h264_aac: Rendition) -> InitInfo:
    return parse_init(h264_aac.init)


@pytest.mark.ffmpeg
def test_duration_falls_back_from_trun_to_tfhd_to_trex(init: InitInfo) -> None:
    """Per-sample durations win, then the tfhd default, then the trex default."""
    video = init.video
    assert video is not None
    assert video.default_sample_duration is not None
    scale = video.timescale
    explicit = fragment(traf(_VIDEO, count=3, durations=[100, 200, 300], tfhd_duration=7))
    assert parse_segment(explicit, init).duration == pytest.approx(600 / scale)
    from_tfhd = fragment(traf(_VIDEO, count=3, tfhd_duration=512))
    assert parse_segment(from_tfhd, init).duration == pytest.approx(3 * 512 / scale)
    from_trex = fragment(traf(_VIDEO, count=4))
    expected = 4 * video.default_sample_duration / scale
    assert parse_segment(from_trex, init).duration == pytest.approx(expected)


@pytest.mark.ffmpeg
def test_keyframe_comes_from_the_first_samples_flags(init: InitInfo) -> None:
    """first_sample_flags, then per-sample flags, then tfhd default flags decide a keyframe."""

    def keyframe(data: bytes) -> bool:
        return parse_segment(fragment(data), init).starts_with_keyframe

    def frames(
        first: int | None = None, each: list[int] | None = None, default: int | None = None
    ) -> bytes:
        return traf(
            _VIDEO, count=2, tfhd_duration=512,
            first_flags=first, sample_flags=each, tfhd_flags=default,
        )  # fmt: skip

    assert keyframe(frames(first=0x0200_0000, default=_NON_SYNC))
    assert not keyframe(frames(first=_NON_SYNC))
    assert not keyframe(frames(each=[_NON_SYNC, 0]))
    assert keyframe(frames(each=[0, _NON_SYNC], default=_NON_SYNC))
    assert not keyframe(frames(default=_NON_SYNC))
    assert keyframe(frames())


@pytest.mark.ffmpeg
def test_video_times_the_segment_and_every_track_is_reported(init: InitInfo) -> None:
    """With two trafs per moof, video sets duration and start; audio is in track_durations."""
    video, audio = init.video, init.audio
    assert video is not None
    assert audio is not None
    data = fragment(
        traf(_AUDIO, count=2, tfhd_duration=1024, base=96000),
        traf(_VIDEO, count=30, tfhd_duration=512, base=2 * video.timescale),
        traf(99, count=5, tfhd_duration=1),  # a track the init does not describe: skipped
    ) + fragment(traf(_VIDEO, count=30, tfhd_duration=512, base=3 * video.timescale))
    info = parse_segment(data, init)
    assert info.start_time == pytest.approx(2.0)
    assert info.duration == pytest.approx(60 * 512 / video.timescale)
    assert info.video_frames == 60
    assert info.track_durations == {
        _VIDEO: pytest.approx(info.duration),
        _AUDIO: pytest.approx(2048 / audio.timescale),
    }


@pytest.mark.ffmpeg
def test_box_sizes_are_checked(init: InitInfo) -> None:
    """Size 0 means "to the end"; a 64-bit size must fit; sizes below a header are refused."""
    good = fragment(traf(_VIDEO, count=2, tfhd_duration=512))
    mdat_at = good.index(b"mdat") - 4
    moof = good[:mdat_at]
    to_end = moof + b"\0\0\0\0mdat" + b"\0" * 64
    assert parse_segment(to_end, init).video_frames == 2
    large = moof + struct.pack(">I4sQ", 1, b"mdat", 16 + 64) + b"\0" * 64
    assert parse_segment(large, init).video_frames == 2
    bad = [
        moof + struct.pack(">I4sQ", 1, b"mdat", 16 + 65) + b"\0" * 64,  # largesize too big
        moof + struct.pack(">I4sQ", 1, b"mdat", 8) + b"\0" * 64,  # largesize below header
        moof + struct.pack(">I4s", 4, b"mdat") + b"\0" * 64,  # size below header
        good[: mdat_at + 20],  # truncated mdat
        good[:mdat_at],  # no mdat at all
        b"\0\0\0\x01mdat\0\0",  # truncated largesize
    ]
    for data in bad:
        with pytest.raises(MediaError):
            parse_segment(data, init)


@pytest.mark.ffmpeg
def test_sample_tables_are_checked(init: InitInfo) -> None:
    """A trun must fit its box, its sample count must be sane, its bytes must fit the mdat."""
    with pytest.raises(MediaError, match="samples"):
        parse_segment(fragment(traf(_VIDEO, count=3, size=5000), mdat=100), init)
    no_fields = box(
        b"traf",
        full_box(b"tfhd", 0, 0x020008, u32(_VIDEO, 512)),
        full_box(b"tfdt", 1, 0, struct.pack(">Q", 0)),
        full_box(b"trun", 0, 0, u32(0xFFFF_FFFF)),  # 4 billion samples in 4 bytes
    )
    with pytest.raises(MediaError, match="samples"):
        parse_segment(fragment(no_fields), init)
    short_table = box(
        b"traf",
        full_box(b"tfhd", 0, 0x020000, u32(_VIDEO)),
        full_box(b"trun", 0, 0x300, u32(1000), u32(1, 1)),  # 1000 samples, one row present
    )
    with pytest.raises(MediaError, match="trun"):
        parse_segment(fragment(short_table), init)


@pytest.mark.ffmpeg
def test_segments_without_usable_samples_are_refused(init: InitInfo) -> None:
    """No tfdt, only unknown tracks, or zero duration: MediaError with a reason."""
    with pytest.raises(MediaError, match="tfdt"):
        parse_segment(fragment(traf(_VIDEO, count=2, tfhd_duration=512, base=None)), init)
    with pytest.raises(MediaError, match="no samples"):
        parse_segment(fragment(traf(42, count=2, tfhd_duration=512)), init)
    with pytest.raises(MediaError, match="zero duration"):
        parse_segment(fragment(traf(_VIDEO, count=2, tfhd_duration=0)), init)


def test_init_without_mvex_is_not_fragmented() -> None:
    """A progressive MP4 (moov without mvex) is refused as an init segment."""
    data = box(b"ftyp", b"isom", u32(0)) + box(b"moov", full_box(b"mvhd", 0, 0, b"\0" * 96))
    assert looks_like_init(data)
    with pytest.raises(MediaError, match="mvex"):
        parse_init(data)


# -- fuzzing ------------------------------------------------------------------------------------

_FUZZ = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


_SYNTHETIC_INIT = InitInfo(
    (
        TrackInfo(1, "video", 90000, "avc1.64001f", 640, 360, None, None, 3000, 0, 0),
        TrackInfo(2, "audio", 48000, "mp4a.40.2", None, None, 48000, 2, 1024, 0, 0),
    )
)


@given(st.binary(max_size=512))
@_FUZZ
def test_random_bytes_raise_media_error_only(data: bytes) -> None:
    """Arbitrary bytes either parse or raise MediaError, and the magic checks never raise."""
    looks_like_init(data)
    looks_like_segment(data)
    with contextlib.suppress(MediaError):
        parse_init(data)
    with contextlib.suppress(MediaError):
        parse_segment(data, _SYNTHETIC_INIT)


@given(
    st.lists(st.sampled_from([b"moof", b"traf", b"trun", b"tfhd", b"mdat", b"tfdt"]), max_size=6),
    st.binary(max_size=64),
)
@_FUZZ
def test_random_box_trees_raise_media_error_only(kinds: list[bytes], tail: bytes) -> None:
    """Well-framed boxes of the right kinds with random contents never raise anything else."""
    data = tail
    for kind in reversed(kinds):
        data = box(kind, data)
    with contextlib.suppress(MediaError):
        parse_segment(data, _SYNTHETIC_INIT)


@pytest.mark.ffmpeg
def test_every_truncated_init_is_refused(h264_aac: Rendition) -> None:
    """Cutting the init segment anywhere is detected (the moov no longer fits)."""
    for end in range(len(h264_aac.init)):
        with pytest.raises(MediaError):
            parse_init(h264_aac.init[:end])


@pytest.mark.ffmpeg
@given(cut=st.floats(0.0, 1.0, exclude_max=True), which=st.integers(0, 2))
@_FUZZ
def test_truncated_segments_are_refused(
    h264_aac: Rendition, init: InitInfo, cut: float, which: int
) -> None:
    """Any proper prefix of a segment raises MediaError."""
    data = h264_aac.segments[which]
    with pytest.raises(MediaError):
        parse_segment(data[: int(cut * len(data))], init)


@pytest.mark.ffmpeg
@given(
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8)
)
@_FUZZ
def test_corrupted_media_raises_media_error_only(
    h264_aac: Rendition, init: InitInfo, edits: list[tuple[float, int]]
) -> None:
    """Real init and segment bytes with random bytes overwritten parse or raise MediaError."""
    header_bytes = 1600  # the boxes live in the first bytes; mutating mdat payload proves little
    for original, parse in (
        (h264_aac.init, parse_init),
        (h264_aac.segments[0], lambda d: parse_segment(d, init)),
    ):
        data = bytearray(original)
        for where, value in edits:
            data[int(where * min(len(data), header_bytes))] = value
        with contextlib.suppress(MediaError):
            parse(bytes(data))
