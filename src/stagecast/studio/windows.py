"""Rolling windows: what arrived in the last ``span`` seconds, with running sums.

Every ``add`` and ``expire`` is O(1) amortised: a value enters a deque once and leaves it once,
and the sums are updated as it does. Reading a window is O(1) too.

Units: seconds, bytes, bits per second (``*_bps``), frames per second.

``SegmentWindow`` (one per rendition) measures the bit rate as Σ bytes x 8 / Σ media duration
of the segments in the window (never by arrival times, which jitter with the network), the frame
rate as Σ frames / Σ duration, and the segment duration jitter as the standard deviation of the
durations. A segment that arrives more than its own duration plus ``LATE_SLACK`` after the
previous one is *late*. ``MediaWindow`` (one per RTMP session) holds one bucket per second of
arrival time, so thousands of messages a second cost bounded memory; it gives the source bit
rate and frame rate over the media timestamps and the keyframe interval from video keyframes.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

DEFAULT_WINDOW = 30.0
# A segment later than its own duration plus this, after the previous one, is late.
LATE_SLACK = 1.0
# A keyframe gap longer than this (or a timestamp going backwards) is a new epoch, not a GOP.
MAX_KEYFRAME_GAP = 60.0
# Timestamps that jump back by more than this, or forward by more than MAX_KEYFRAME_GAP, start
# a new epoch (the encoder reconnected or reset its clock).
_BACKWARD_JUMP_MS = 1000
# At most this many keyframe intervals per window (an intra-only stream has one per frame).
_INTERVAL_CAP = 4096


class Intervals:
    """Values (seconds) that ended in the last ``span`` seconds: count, mean and max.

    ``add`` and ``expire`` are O(1) amortised: the max comes from a monotonic deque.
    """

    __slots__ = ("_items", "_max", "_seq", "_sum", "cap", "span")

    def __init__(self, span: float, cap: int = _INTERVAL_CAP) -> None:
        self.span = span
        self.cap = cap
        self._items: deque[tuple[int, float, float]] = deque()  # (seq, at, value)
        self._max: deque[tuple[int, float]] = deque()  # (seq, value), values decreasing
        self._sum = 0.0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, at: float, value: float) -> None:
        """Record ``value`` observed at ``at`` (monotonic seconds)."""
        self._seq += 1
        self._items.append((self._seq, at, value))
        self._sum += value
        while self._max and self._max[-1][1] <= value:
            self._max.pop()
        self._max.append((self._seq, value))
        if len(self._items) > self.cap:
            self._drop_oldest()
        self.expire(at)

    def expire(self, now: float) -> None:
        """Forget values observed ``span`` seconds or more before ``now``."""
        limit = now - self.span
        while self._items and self._items[0][1] <= limit:
            self._drop_oldest()

    def due(self, now: float) -> bool:
        """Tell whether ``expire(now)`` would forget anything."""
        return bool(self._items) and self._items[0][1] <= now - self.span

    def _drop_oldest(self) -> None:
        seq, _, value = self._items.popleft()
        self._sum -= value
        while self._max and self._max[0][0] <= seq:
            self._max.popleft()
        if not self._items:
            self._sum = 0.0

    def clear(self) -> None:
        """Forget every value."""
        self._items.clear()
        self._max.clear()
        self._sum = 0.0

    @property
    def mean(self) -> float | None:
        """Return the mean of the values in the window (None if empty)."""
        return self._sum / len(self._items) if self._items else None

    @property
    def max(self) -> float | None:
        """Return the largest value in the window (None if empty)."""
        return self._max[0][1] if self._max else None


class SegmentReading(NamedTuple):
    """The figures of a segment window at one moment (see the ``SegmentWindow`` properties)."""

    bitrate_bps: float | None
    frame_rate: float | None
    jitter: float | None
    mean_duration: float | None
    late: int
    duration: float
    segments: int
    keyframe_mean: float | None
    keyframe_max: float | None


class MediaReading(NamedTuple):
    """The figures of a media window at one moment (see the ``MediaWindow`` properties)."""

    bitrate_bps: float | None
    frame_rate: float | None
    span: float
    keyframe_mean: float | None
    keyframe_max: float | None


class SegmentWindow:
    """The segments of one rendition that arrived in the last ``span`` seconds."""

    __slots__ = (
        "_bytes",
        "_duration",
        "_duration_sq",
        "_frames",
        "_gop",
        "_items",
        "_last_duration",
        "_late",
        "_reading",
        "keyframes",
        "last_at",
        "span",
        "total_bytes",
        "total_late",
        "total_segments",
        "version",
    )

    def __init__(self, span: float = DEFAULT_WINDOW) -> None:
        self.span = span
        # (arrival, duration, bytes, frames, late)
        self._items: deque[tuple[float, float, int, int, bool]] = deque()
        self._bytes = 0
        self._duration = 0.0
        self._duration_sq = 0.0
        self._frames = 0
        self._late = 0
        self._gop: float | None = None  # media seconds since the last keyframe segment began
        self._last_duration = 0.0
        self.keyframes = Intervals(span)
        self.last_at: float | None = None
        self.total_segments = 0
        self.total_bytes = 0
        self.total_late = 0
        self.version = 0  # changes whenever a segment enters or leaves the window
        self._reading: tuple[int, SegmentReading] | None = None

    def add(
        self,
        now: float,
        duration: float,
        byte_size: int,
        frames: int = 0,
        *,
        keyframe: bool = True,
        discontinuity: bool = False,
    ) -> bool:
        """Count one segment that arrived at ``now``; return whether it was late."""
        late = (
            self.last_at is not None
            and not discontinuity
            and now - self.last_at > duration + LATE_SLACK
        )
        self._items.append((now, duration, byte_size, frames, late))
        self._bytes += byte_size
        self._duration += duration
        self._duration_sq += duration * duration
        self._frames += frames
        self._late += late
        self.total_segments += 1
        self.total_bytes += byte_size
        self.total_late += late
        self.last_at = now
        self._last_duration = duration
        self.version += 1
        self._keyframe(now, duration, keyframe, discontinuity)
        self.expire(now)
        return late

    def _keyframe(self, now: float, duration: float, keyframe: bool, discontinuity: bool) -> None:
        if discontinuity:
            self._gop = None
        if keyframe:
            if self._gop is not None and 0 < self._gop <= MAX_KEYFRAME_GAP:
                self.keyframes.add(now, self._gop)
            self._gop = duration
        elif self._gop is not None:
            self._gop += duration

    def expire(self, now: float) -> None:
        """Forget segments that arrived ``span`` seconds or more before ``now``."""
        limit = now - self.span
        items = self._items
        if (not items or items[0][0] > limit) and not self.keyframes.due(now):
            return  # the common case at a tick: nothing to forget
        before = len(items) + len(self.keyframes)
        while items and items[0][0] <= limit:
            _, duration, byte_size, frames, late = items.popleft()
            self._bytes -= byte_size
            self._duration -= duration
            self._duration_sq -= duration * duration
            self._frames -= frames
            self._late -= late
        if not items:
            self._duration = self._duration_sq = 0.0
        self.keyframes.expire(now)
        if len(items) + len(self.keyframes) != before:
            self.version += 1

    def reading(self) -> SegmentReading:
        """Return every figure of the window at once (kept until the window changes)."""
        cached = self._reading
        if cached is not None and cached[0] == self.version:
            return cached[1]
        value = SegmentReading(
            self.bitrate_bps,
            self.frame_rate,
            self.jitter,
            self.mean_duration,
            self._late,
            self._duration,
            len(self._items),
            self.keyframes.mean,
            self.keyframes.max,
        )
        self._reading = (self.version, value)
        return value

    @property
    def count(self) -> int:
        """Return how many segments are in the window."""
        return len(self._items)

    @property
    def byte_size(self) -> int:
        """Return Σ bytes of the segments in the window."""
        return self._bytes

    @property
    def duration(self) -> float:
        """Return Σ media duration of the segments in the window (seconds)."""
        return self._duration

    @property
    def late(self) -> int:
        """Return how many segments in the window were late."""
        return self._late

    @property
    def bitrate_bps(self) -> float | None:
        """Return Σ bytes x 8 / Σ duration (None with no media in the window)."""
        return self._bytes * 8 / self._duration if self._duration > 0 else None

    @property
    def frame_rate(self) -> float | None:
        """Return Σ video frames / Σ duration (None without video frames)."""
        return self._frames / self._duration if self._frames and self._duration > 0 else None

    @property
    def mean_duration(self) -> float | None:
        """Return the mean segment duration in the window."""
        return self._duration / len(self._items) if self._items else None

    @property
    def jitter(self) -> float | None:
        """Return the standard deviation of the segment durations in the window."""
        n = len(self._items)
        if n < 2:
            return None
        mean = self._duration / n
        return math.sqrt(max(self._duration_sq / n - mean * mean, 0.0))


class MediaWindow:
    """The RTMP messages of one session, in one bucket per second of arrival time."""

    __slots__ = (
        "_buckets",
        "_bytes",
        "_frames",
        "_last_keyframe_ms",
        "_last_ms",
        "keyframes",
        "last_at",
        "messages",
        "span",
        "total_bytes",
    )

    def __init__(self, span: float = DEFAULT_WINDOW) -> None:
        self.span = span
        # [second, bytes, video frames, first timestamp ms, last timestamp ms]
        self._buckets: deque[list[int]] = deque()
        self._bytes = 0
        self._frames = 0
        self._last_ms: int | None = None
        self._last_keyframe_ms: int | None = None
        self.keyframes = Intervals(span)
        self.last_at: float | None = None
        self.messages = 0
        self.total_bytes = 0

    def add(self, now: float, kind: str, timestamp_ms: int, byte_size: int, keyframe: bool) -> None:
        """Count one message that arrived at ``now``."""
        last = self._last_ms
        if last is not None and (
            timestamp_ms < last - _BACKWARD_JUMP_MS or timestamp_ms > last + MAX_KEYFRAME_GAP * 1000
        ):
            self._reset()
            last = None
        self._last_ms = timestamp_ms if last is None else max(last, timestamp_ms)
        second = int(now)
        buckets = self._buckets
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0, timestamp_ms, timestamp_ms])
        bucket = buckets[-1]
        bucket[1] += byte_size
        self._bytes += byte_size
        if timestamp_ms < bucket[3]:
            bucket[3] = timestamp_ms
        if timestamp_ms > bucket[4]:
            bucket[4] = timestamp_ms
        if kind == "video":
            bucket[2] += 1
            self._frames += 1
            if keyframe:
                self._keyframe(now, timestamp_ms)
        self.messages += 1
        self.total_bytes += byte_size
        self.last_at = now
        self.expire(now)

    def _keyframe(self, now: float, timestamp_ms: int) -> None:
        previous = self._last_keyframe_ms
        if previous is not None and timestamp_ms > previous:
            self.keyframes.add(now, (timestamp_ms - previous) / 1000)
        if previous is None or timestamp_ms > previous:
            self._last_keyframe_ms = timestamp_ms

    def _reset(self) -> None:
        self._buckets.clear()
        self._bytes = self._frames = 0
        self._last_ms = self._last_keyframe_ms = None
        self.keyframes.clear()

    def expire(self, now: float) -> None:
        """Forget buckets whose second ended ``span`` seconds or more before ``now``."""
        limit = now - self.span
        buckets = self._buckets
        if (not buckets or buckets[0][0] + 1 > limit) and not self.keyframes.due(now):
            return
        while buckets and buckets[0][0] + 1 <= limit:
            bucket = buckets.popleft()
            self._bytes -= bucket[1]
            self._frames -= bucket[2]
        self.keyframes.expire(now)

    @property
    def span_seconds(self) -> float:
        """Return the media time the window covers (newest minus oldest timestamp)."""
        if not self._buckets:
            return 0.0
        return max(self._buckets[-1][4] - self._buckets[0][3], 0) / 1000

    @property
    def bitrate_bps(self) -> float | None:
        """Return Σ bytes x 8 over the media time covered (None under 0.5 s of media)."""
        span = self.span_seconds
        return self._bytes * 8 / span if span >= 0.5 else None

    @property
    def frame_rate(self) -> float | None:
        """Return video frames per second of media time (None without video)."""
        span = self.span_seconds
        return self._frames / span if self._frames and span >= 0.5 else None

    def reading(self) -> MediaReading:
        """Return every figure of the window at once."""
        buckets = self._buckets
        span = max(buckets[-1][4] - buckets[0][3], 0) / 1000 if buckets else 0.0
        measured = span >= 0.5
        keyframes = self.keyframes
        return MediaReading(
            self._bytes * 8 / span if measured else None,
            self._frames / span if measured and self._frames else None,
            span,
            keyframes.mean,
            keyframes.max,
        )
