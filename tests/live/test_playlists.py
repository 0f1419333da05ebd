"""HLS playlists against RFC 8216, read back with the m3u8 parser, plus bit-rate stats."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import m3u8
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecast.live.bandwidth import BandwidthStats
from stagecast.live.playlists import (
    MediaPlaylist,
    SegmentEntry,
    Variant,
    render_master,
    render_vod,
    rounded_duration,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def make_entries(
    durations: list[float],
    *,
    first: int = 0,
    breaks: frozenset[int] = frozenset(),
    map_changes_at_breaks: bool = True,
) -> list[SegmentEntry]:
    """Build consecutive entries; ``breaks`` holds the indexes that start a new epoch."""
    entries, epoch, when = [], 0, T0
    for index, duration in enumerate(durations):
        if index in breaks:
            epoch += 1
            when += timedelta(seconds=5)  # the encoder was away for a while
        entries.append(
            SegmentEntry(
                sequence=first + index,
                duration=duration,
                uri=f"seg-{first + index:08d}.m4s",
                program_date_time=when,
                discontinuity=index in breaks,
                map_uri=f"init-{epoch if map_changes_at_breaks else 0}.mp4",
                byte_size=250_000,
            )
        )
        when += timedelta(seconds=duration)
    return entries


def half_up(value: float) -> int:
    return int(Decimal(repr(value)).to_integral_value(rounding=ROUND_HALF_UP))


def map_lines(text: str) -> list[int]:
    """Return, for each EXT-X-MAP tag, the index of the segment it precedes."""
    positions, segment = [], 0
    for line in text.splitlines():
        if line.startswith("#EXT-X-MAP"):
            positions.append(segment)
        elif line and not line.startswith("#"):
            segment += 1
    return positions


def check_rfc(text: str, listed: list[SegmentEntry]) -> m3u8.M3U8:
    """Parse ``text`` and assert the rules every media playlist keeps, whatever its window."""
    assert text.startswith("#EXTM3U\n")
    parsed = m3u8.loads(text)
    assert parsed.version == 7
    assert [s.uri for s in parsed.segments] == [e.uri for e in listed]
    assert parsed.media_sequence == (listed[0].sequence if listed else 0)
    for segment, entry in zip(parsed.segments, listed, strict=True):
        assert half_up(segment.duration) <= parsed.target_duration  # 4.3.3.1
        assert segment.duration == pytest.approx(entry.duration, abs=0.0005)
        assert segment.discontinuity == entry.discontinuity
        assert segment.init_section.uri == entry.map_uri
        # Written with milliseconds, so equal to within one.
        assert abs(segment.program_date_time - entry.program_date_time) < timedelta(milliseconds=1)
    times = [s.program_date_time for s in parsed.segments]
    assert times == sorted(times)
    # EXT-X-MAP before the first segment and wherever the init segment changes, nowhere else.
    changes = [i for i, e in enumerate(listed) if i == 0 or e.map_uri != listed[i - 1].map_uri]
    assert map_lines(text) == changes
    return parsed


def test_live_window_slides_and_media_sequence_follows() -> None:
    """A 3-segment window over 2 s segments lists the last 3, starting at a non-zero sequence."""
    playlist = MediaPlaylist(window_segments=3)
    entries = make_entries([2.0] * 10, first=1000)
    for entry in entries:
        playlist.append(entry)
    parsed = check_rfc(playlist.render(), entries[-3:])
    assert parsed.media_sequence == playlist.media_sequence == 1007
    assert parsed.target_duration == playlist.target_duration == 2
    assert parsed.discontinuity_sequence == 0
    assert parsed.is_independent_segments
    assert not parsed.is_endlist
    assert playlist.last_sequence == 1009


def test_window_keeps_three_target_durations() -> None:
    """6.2.2: a segment stays while the rest would last under three target durations."""
    playlist = MediaPlaylist(window_segments=1)
    entries = make_entries([2.0] * 8)
    for entry in entries:
        playlist.append(entry)
    assert playlist.segments == tuple(entries[-3:])
    longer = make_entries([6.0], first=8)[0]
    playlist.append(longer)  # the target becomes 6: nothing leaves until 18 s would remain
    assert playlist.segments == (*entries[-3:], longer)


def test_dvr_window_keeps_segments_ending_within_it() -> None:
    """With a DVR window every segment ending within its last seconds stays listed."""
    playlist = MediaPlaylist(window_segments=2, dvr_seconds=10.0)
    entries = make_entries([2.0] * 20)
    for entry in entries:
        playlist.append(entry)
    # Segment ends lie 0, 2, ..., 10 s before the last one's end: six segments.
    check_rfc(playlist.render(), entries[-6:])


def test_discontinuity_sequence_counts_discontinuities_that_left() -> None:
    """EXT-X-DISCONTINUITY-SEQUENCE rises by one as each EXT-X-DISCONTINUITY slides out."""
    playlist = MediaPlaylist(window_segments=3)
    entries = make_entries([2.0] * 12, breaks=frozenset({2, 4, 5}))
    seen = []
    for index, entry in enumerate(entries):
        playlist.append(entry)
        listed = entries[max(0, index - 2) : index + 1]
        parsed = check_rfc(playlist.render(), listed)
        left = sum(e.discontinuity for e in entries[: max(0, index - 2)])
        assert parsed.discontinuity_sequence == playlist.discontinuity_sequence == left
        seen.append(left)
    assert seen == [0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3]


def test_map_is_repeated_after_a_discontinuity_with_a_new_init() -> None:
    """A new epoch's init gets its EXT-X-MAP right after the EXT-X-DISCONTINUITY."""
    playlist = MediaPlaylist(window_segments=10)
    entries = make_entries([2.0] * 6, breaks=frozenset({3}))
    for entry in entries:
        playlist.append(entry)
    text = playlist.render()
    check_rfc(text, entries)
    assert '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init-1.mp4"\n' in text
    same_init = MediaPlaylist(window_segments=10)
    for entry in make_entries([2.0] * 6, breaks=frozenset({3}), map_changes_at_breaks=False):
        same_init.append(entry)
    assert same_init.render().count("#EXT-X-MAP") == 1


def test_target_duration_rounds_half_up_and_never_decreases() -> None:
    """EXTINF 2.4 keeps target 2; 2.5 (and 2.4996, rendered 2.500) raise it to 3, for good."""
    assert [rounded_duration(d) for d in (2.4, 2.4994, 2.4996, 2.5, 3.49)] == [2, 2, 3, 3, 3]
    playlist = MediaPlaylist(window_segments=2)
    for entry in make_entries([2.0, 2.4, 2.4996, 2.0, 2.0, 2.0, 2.0]):
        playlist.append(entry)
        assert m3u8.loads(playlist.render()).target_duration == playlist.target_duration
    assert playlist.target_duration == 3  # the 2.4996 s segment left long ago
    assert MediaPlaylist(min_target_duration=4).target_duration == 4


def test_program_date_time_is_utc_with_milliseconds() -> None:
    """EXT-X-PROGRAM-DATE-TIME is written in UTC, with milliseconds and a Z."""
    paris = timezone(timedelta(hours=2))
    playlist = MediaPlaylist()
    when = datetime(2024, 5, 1, 14, 0, 0, 123_456, tzinfo=paris)
    playlist.append(SegmentEntry(5, 2.0, "a.m4s", when, False, "init.mp4", 10))
    assert "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.123Z\n" in playlist.render()
    assert "#EXTINF:2.000,\n" in playlist.render()


def test_render_is_cached_until_the_next_change() -> None:
    """Rendering twice returns the same string; append and end invalidate it."""
    playlist = MediaPlaylist()
    entries = make_entries([2.0] * 3)
    playlist.append(entries[0])
    first = playlist.render()
    assert playlist.render() is first
    playlist.append(entries[1])
    second = playlist.render()
    assert second is not first
    playlist.end()
    ended = playlist.render()
    assert ended.endswith("#EXT-X-ENDLIST\n")
    assert playlist.render() is ended
    assert m3u8.loads(ended).is_endlist


def test_appends_must_increase_and_stop_after_end() -> None:
    """Repeated or decreasing sequences and appends after end() raise ValueError."""
    playlist = MediaPlaylist()
    entries = make_entries([2.0] * 3, first=7)
    playlist.append(entries[1])
    for stale in (entries[0], entries[1]):
        with pytest.raises(ValueError, match="sequence"):
            playlist.append(stale)
    playlist.end()
    with pytest.raises(ValueError, match="ended"):
        playlist.append(entries[2])


@pytest.mark.parametrize(
    "changes",
    [
        {"uri": "a.m4s\n#EXT-X-ENDLIST"},
        {"uri": "#a.m4s"},
        {"uri": ""},
        {"map_uri": 'init".mp4'},
        {"duration": 0.0},
        {"duration": math.nan},
        {"sequence": -1},
        {"program_date_time": datetime(2024, 5, 1)},  # naive on purpose
    ],
)
def test_entries_a_playlist_cannot_carry_are_refused(changes: dict[str, object]) -> None:
    """Tag injection through URIs, non-positive durations and naive times raise ValueError."""
    fields: dict[str, object] = {
        "sequence": 0,
        "duration": 2.0,
        "uri": "a.m4s",
        "program_date_time": T0,
        "discontinuity": False,
        "map_uri": "init.mp4",
        "byte_size": 1,
    }
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SegmentEntry(**{**fields, **changes})  # type: ignore[arg-type]


def test_empty_live_playlist_parses() -> None:
    """A playlist with no segment yet is still a valid, parseable live playlist."""
    parsed = m3u8.loads(MediaPlaylist().render())
    assert parsed.segments == []
    assert parsed.target_duration == 1


@settings(max_examples=150, deadline=None)
@given(
    durations=st.lists(st.floats(0.5, 6.0), min_size=1, max_size=30),
    breaks=st.sets(st.integers(0, 29)),
    window=st.integers(1, 8),
    dvr=st.sampled_from([0.0, 5.0, 12.5, 30.0]),
    first=st.integers(0, 10**6),
)
def test_live_playlist_properties(
    durations: list[float], breaks: set[int], window: int, dvr: float, first: int
) -> None:
    """Over any append sequence the playlist parses, lists a suffix of what was appended with
    the window rules kept, and its sequence numbers and target duration behave."""
    entries = make_entries(durations, first=first, breaks=frozenset(breaks))
    playlist = MediaPlaylist(window_segments=window, dvr_seconds=dvr)
    target = 1
    for count, entry in enumerate(entries, start=1):
        playlist.append(entry)
        listed = list(playlist.segments)
        assert listed == entries[count - len(listed) : count]
        parsed = check_rfc(playlist.render(), listed)
        assert playlist.render() is playlist.render()
        assert parsed.media_sequence == listed[0].sequence == playlist.media_sequence
        gone = entries[: count - len(listed)]
        assert parsed.discontinuity_sequence == sum(e.discontinuity for e in gone)
        assert parsed.target_duration >= target  # never decreases
        target = parsed.target_duration
        assert target == max(1, *(rounded_duration(e.duration) for e in entries[:count]))
        _check_window(listed, count, window=window, dvr=dvr, target=target)


def _check_window(
    listed: list[SegmentEntry], count: int, *, window: int, dvr: float, target: int
) -> None:
    assert len(listed) >= min(window, count)
    ends_before_last = list(itertools.accumulate(e.duration for e in reversed(listed[1:])))
    rest = ends_before_last[-1] if ends_before_last else 0.0  # what stays if the head left
    if len(listed) > window:
        # The head is only kept because the DVR window or the 3-target-duration rule needs it.
        assert (dvr and rest <= dvr + 1e-4) or rest < 3 * target + 1e-4
    if dvr and count > len(listed):
        # Everything ending within the DVR window is listed: the newest segment that left
        # ended further back than dvr seconds.
        assert sum(e.duration for e in listed) > dvr - 1e-4


def test_vod_with_two_epochs_lists_everything() -> None:
    """A VOD over two epochs keeps both inits, the discontinuity and every segment."""
    entries = make_entries([2.0, 2.0, 1.2, 2.0, 2.0, 2.6], first=40, breaks=frozenset({3}))
    text = render_vod(entries)
    parsed = check_rfc(text, entries)
    assert parsed.playlist_type == "vod"
    assert parsed.is_endlist
    assert parsed.target_duration == 3
    assert parsed.media_sequence == 40
    assert [s.init_section.uri for s in parsed.segments] == ["init-0.mp4"] * 3 + ["init-1.mp4"] * 3
    assert text.count("#EXT-X-MAP") == 2
    assert sum(s.duration for s in parsed.segments) == pytest.approx(11.8)


def test_vod_refuses_empty_or_unordered_entries() -> None:
    """A VOD needs segments in strictly increasing sequence order (gaps allowed)."""
    entries = make_entries([2.0] * 3)
    with pytest.raises(ValueError, match="at least one"):
        render_vod([])
    with pytest.raises(ValueError, match="increase"):
        render_vod([entries[1], entries[0]])
    assert m3u8.loads(render_vod([entries[0], entries[2]])).media_sequence == 0


def test_master_playlist_lists_variants_by_bandwidth() -> None:
    """The master playlist has the measured attributes, highest bandwidth first."""
    av_360 = "avc1.64001e,mp4a.40.2"
    av_1080 = "avc1.640028,mp4a.40.2"
    variants = [
        Variant("360p/index.m3u8", 900_000, 750_000, av_360, (640, 360), 30.0, "360p"),
        Variant("source/index.m3u8", 4_500_000, 4_000_123, av_1080, (1920, 1080), 29.97, "src"),
        Variant("audio/index.m3u8", 130_000, None, "mp4a.40.2", None, None, "audio"),
    ]
    text = render_master(variants)
    assert text.startswith("#EXTM3U\n")
    parsed = m3u8.loads(text)
    assert parsed.is_variant
    assert parsed.is_independent_segments
    got = [
        (p.uri, p.stream_info.bandwidth, p.stream_info.average_bandwidth, p.stream_info.codecs,
         p.stream_info.resolution, p.stream_info.frame_rate)
        for p in parsed.playlists
    ]  # fmt: skip
    assert got == [
        ("source/index.m3u8", 4_500_000, 4_000_123, av_1080, (1920, 1080), 29.97),
        ("360p/index.m3u8", 900_000, 750_000, av_360, (640, 360), 30.0),
        ("audio/index.m3u8", 130_000, None, "mp4a.40.2", None, None),
    ]
    assert "FRAME-RATE=29.970" in text
    assert "NAME=" not in text  # not an EXT-X-STREAM-INF attribute (4.3.4.2)


def test_master_refuses_what_it_cannot_quote() -> None:
    """No variants, or a CODECS value with a quote, raise ValueError."""
    with pytest.raises(ValueError, match="at least one"):
        render_master([])
    with pytest.raises(ValueError, match="codecs"):
        Variant("a.m3u8", 1, None, 'avc1"', None, None, "a")


def test_bandwidth_stats_peak_and_average() -> None:
    """Peak is the fastest segment, average all bits over all seconds, both rounded up."""
    stats = BandwidthStats()
    assert (stats.peak, stats.average, stats.count) == (0, 0, 0)
    stats.add(250_000, 2.0)  # 1,000,000 bit/s
    stats.add(500_000, 2.0)  # 2,000,000 bit/s
    stats.add(100_001, 1.0)  # 800,008 bit/s
    assert stats.count == 3
    assert stats.peak == 2_000_000
    assert stats.average == math.ceil(850_001 * 8 / 5.0)


def test_bandwidth_stats_merge_short_segments_for_the_peak() -> None:
    """With min_peak_duration a lone short segment is measured together with the next."""
    stats = BandwidthStats(min_peak_duration=1.0)
    stats.add(50_000, 0.1)  # 4 Mbit/s alone, but only 0.1 s long
    assert stats.peak == 4_000_000  # nothing longer yet: the short run is all there is
    stats.add(250_000, 2.0)
    assert stats.peak == math.ceil(300_000 * 8 / 2.1)
    with pytest.raises(ValueError, match="duration"):
        stats.add(1, 0.0)
    with pytest.raises(ValueError, match="byte_size"):
        stats.add(-1, 1.0)
