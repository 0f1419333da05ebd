"""The rolling ingest windows: exact sums over the window, eviction by age, O(1) bookkeeping."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecast.live.hooks import MediaEvent, SegmentEvent
from stagecast.studio.telemetry import IngestMetrics
from stagecast.studio.windows import LATE_SLACK, Intervals, MediaWindow, SegmentWindow

SPAN = 30.0


def segment_event(
    session_id: int,
    channel_id: int,
    rendition: str,
    byte_size: int,
    *,
    sequence: int = 0,
    duration: float = 2.0,
    frames: int = 60,
    work: float = 0.001,
) -> SegmentEvent:
    """Return a segment event with sensible defaults (keyword fields: robust to additions)."""
    return SegmentEvent(
        session_id=session_id,
        channel_id=channel_id,
        rendition=rendition,
        sequence=sequence,
        start_time=sequence * duration,
        duration=duration,
        byte_size=byte_size,
        video_frames=frames,
        keyframe=True,
        discontinuity=False,
        work_seconds=work,
    )


segments = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=20.0),  # gap since the previous arrival
        st.floats(min_value=0.05, max_value=10.0),  # media duration
        st.integers(min_value=0, max_value=5_000_000),  # bytes
        st.integers(min_value=0, max_value=600),  # frames
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(segments)
def test_bitrate_is_bytes_over_media_duration_of_the_window(
    events: list[tuple[float, float, int, int]],
) -> None:
    """Bit rate, frame rate and jitter match their definitions over the events in the window."""
    window = SegmentWindow(SPAN)
    now = 0.0
    arrived = []
    for gap, duration, size, frames in events:
        now += gap
        window.add(now, duration, size, frames)
        arrived.append((now, duration, size, frames))
    kept = [e for e in arrived if e[0] > now - SPAN]
    assert window.count == len(kept)
    assert window.byte_size == sum(e[2] for e in kept)
    duration = sum(e[1] for e in kept)
    assert window.duration == pytest.approx(duration, rel=1e-9, abs=1e-9)
    assert window.bitrate_bps == pytest.approx(sum(e[2] for e in kept) * 8 / duration, rel=1e-9)
    frames = sum(e[3] for e in kept)
    if frames:
        assert window.frame_rate == pytest.approx(frames / duration, rel=1e-9)
    if len(kept) >= 2:
        expected = statistics.pstdev([e[1] for e in kept])
        assert window.jitter == pytest.approx(expected, rel=1e-6, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(segments, st.floats(min_value=0.0, max_value=100.0))
def test_windows_age_out_without_new_segments(
    events: list[tuple[float, float, int, int]], wait: float
) -> None:
    """A quiet stream's window empties by age alone (expire), and its sums go back to zero."""
    window = SegmentWindow(SPAN)
    now = 0.0
    for gap, duration, size, frames in events:
        now += gap
        window.add(now, duration, size, frames)
    last = now
    window.expire(now + wait)
    if wait >= SPAN:
        assert window.count == 0
        assert window.byte_size == 0
        assert window.duration == 0.0
        assert window.bitrate_bps is None
    else:
        assert window.count >= 1  # the last segment, at least, is younger than the span
    assert window.last_at == last


def test_bookkeeping_is_constant_per_segment() -> None:
    """A day of segments keeps only the window's worth in memory: each is added and evicted once."""
    window = SegmentWindow(SPAN)
    for i in range(43_200):  # 24 h of 2 s segments
        window.add(i * 2.0, 2.0, 500_000, 60)
        assert window.count <= SPAN / 2
    assert window.count == 15
    assert window.total_segments == 43_200
    assert window.bitrate_bps == pytest.approx(2_000_000)
    assert window.frame_rate == pytest.approx(30.0)
    assert window.jitter == pytest.approx(0.0, abs=1e-6)


def test_a_segment_later_than_its_duration_is_late() -> None:
    """Late means arriving more than its duration plus the slack after the previous one."""
    window = SegmentWindow(SPAN)
    assert window.add(0.0, 2.0, 100) is False
    assert window.add(2.0 + LATE_SLACK, 2.0, 100) is False
    assert window.add(5.0 + 2 * LATE_SLACK, 2.0, 100) is True
    assert window.add(20.0, 2.0, 100, discontinuity=True) is False  # a reconnect is not late
    assert window.late == 1
    assert window.total_late == 1
    window.expire(5.0 + 2 * LATE_SLACK + SPAN)
    assert window.late == 0
    assert window.total_late == 1


def test_keyframe_interval_from_segments() -> None:
    """HTTP push: the keyframe interval is the media time between keyframe segments."""
    window = SegmentWindow(SPAN)
    for i in range(8):
        window.add(i * 2.0, 2.0, 100, keyframe=i % 4 == 0)  # a keyframe every 8 s
    assert window.keyframes.max == pytest.approx(8.0)
    window.add(16.0, 2.0, 100, keyframe=True, discontinuity=True)
    window.add(18.0, 2.0, 100, keyframe=True)
    assert window.keyframes.mean == pytest.approx((8.0 + 2.0) / 2)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 100.0, allow_subnormal=False)),
        min_size=1,
        max_size=300,
    )
)
def test_intervals_give_the_exact_mean_and_max_of_the_window(
    values: list[tuple[float, float]],
) -> None:
    """The sliding max (monotonic deque) and mean match a brute-force scan of the window."""
    intervals = Intervals(SPAN, cap=50)
    now = 0.0
    seen = []
    for gap, value in values:
        now += gap
        intervals.add(now, value)
        seen.append((now, value))
    kept = [v for at, v in seen if at > now - SPAN][-50:]
    assert len(intervals) == len(kept)
    assert intervals.max == max(kept)
    assert intervals.mean == pytest.approx(sum(kept) / len(kept), rel=1e-9, abs=1e-9)


def test_media_window_measures_rtmp_bitrate_frame_rate_and_gop() -> None:
    """30 fps video with a keyframe every 60 frames, 2 Mb/s: bucketed, bounded memory."""
    window = MediaWindow(SPAN)
    frame_bytes = 2_000_000 // 8 // 30
    for i in range(30 * 120):  # two minutes
        ts = round(i * 1000 / 30)
        window.add(i / 30, "video", ts, frame_bytes, keyframe=i % 60 == 0)
        if i % 2 == 0:
            window.add(i / 30, "audio", ts, 100, keyframe=False)
    assert len(window._buckets) <= SPAN + 2  # one per second, never per message
    assert window.bitrate_bps == pytest.approx(2_000_000 + 15 * 100 * 8, rel=0.02)
    assert window.frame_rate == pytest.approx(30.0, rel=0.02)
    assert window.keyframes.max == pytest.approx(2.0, abs=0.05)
    assert window.messages == 30 * 120 + 30 * 60


def test_media_window_restarts_when_timestamps_jump() -> None:
    """An encoder that restarts its clock (a reconnect) starts a new window, no bogus interval."""
    window = MediaWindow(SPAN)
    window.add(0.0, "video", 50_000, 1000, keyframe=True)
    window.add(1.0, "video", 51_000, 1000, keyframe=False)
    window.add(2.0, "video", 0, 1000, keyframe=True)  # back to zero
    window.add(4.0, "video", 2000, 1000, keyframe=True)
    assert window.keyframes.max == pytest.approx(2.0)
    assert len(window.keyframes) == 1


def test_observers_feed_per_session_and_rendition_windows() -> None:
    """The hooks' events land in the right stream and rendition; odd input is ignored."""
    clock = [100.0]
    ingest = IngestMetrics(SPAN, clock=lambda: clock[0])
    for i in range(5):
        clock[0] += 2
        for name, size in (("source", 500_000), ("360p", 100_000)):
            ingest.on_segment(segment_event(7, 3, name, size, sequence=i, work=0.003))
    ingest.on_segment(segment_event(7, 3, "source", 10, duration=math.nan))
    ingest.on_media(MediaEvent(7, 3, "video", 0, 4000, True))
    stream = ingest.get(7)
    assert stream is not None
    assert stream.channel_id == 3
    assert stream.renditions["source"].bitrate_bps == pytest.approx(2_000_000)
    assert stream.renditions["360p"].bitrate_bps == pytest.approx(400_000)
    assert ingest.segments_total == 10
    assert ingest.segment_bytes_total == 3_000_000
    assert ingest.work.count == 10
    assert ingest.work.cumulative()[2] == 10
    assert stream.last_at == clock[0]
    ingest.retain(set())
    assert ingest.get(7) is None


def test_stream_count_is_bounded() -> None:
    """Past max_streams the oldest stream's windows are dropped, not kept forever."""
    ingest = IngestMetrics(SPAN, max_streams=3)
    for session in range(10):
        ingest.on_media(MediaEvent(session, 1, "audio", 0, 10, False))
    assert sorted(ingest.streams) == [7, 8, 9]
