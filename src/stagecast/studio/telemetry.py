"""What an encoder sends, per live session and rendition, in rolling windows (default 30 s).

Ingest calls ``IngestMetrics.on_segment`` for every accepted segment and ``on_media`` for every
RTMP audio/video message; each call does O(1) amortised work on the stream's windows
(``stagecast.studio.windows``) and never I/O. Reading them is O(1) too, so a 1 Hz tick over
every stream costs no database query and no scan. HTTP push sends no media messages: its
keyframe interval comes from the segments.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

from stagecast.live.hooks import MediaEvent, SegmentEvent
from stagecast.studio.windows import DEFAULT_WINDOW, MediaWindow, SegmentWindow

# Server work per segment, for the Prometheus histogram (seconds).
WORK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Clock = Callable[[], float]


@dataclass
class WorkHistogram:
    """Server seconds per segment, by bucket (``WORK_BUCKETS`` plus one past the last)."""

    counts: list[int]
    total: float = 0.0
    count: int = 0

    @classmethod
    def empty(cls) -> WorkHistogram:
        """Return a histogram with every bucket at zero."""
        return cls([0] * (len(WORK_BUCKETS) + 1))

    def observe(self, seconds: float) -> None:
        """Count one value (a binary search over the bounds)."""
        self.total += seconds
        self.count += 1
        self.counts[bisect_left(WORK_BUCKETS, seconds)] += 1

    def cumulative(self) -> list[int]:
        """Return the Prometheus form: values at or under each bound of ``WORK_BUCKETS``."""
        return list(accumulate(self.counts[:-1]))


class StreamMetrics:
    """Everything measured about one live session: its media and each rendition."""

    __slots__ = ("channel_id", "last_at", "media", "renditions", "session_id", "span")

    def __init__(self, session_id: int, channel_id: int, span: float) -> None:
        self.session_id = session_id
        self.channel_id = channel_id
        self.span = span
        self.media: MediaWindow | None = None
        self.renditions: dict[str, SegmentWindow] = {}
        # When media (a message or a segment) last arrived (monotonic seconds).
        self.last_at: float | None = None

    def rendition(self, name: str) -> SegmentWindow:
        """Return the window of rendition ``name``, created on first use."""
        window = self.renditions.get(name)
        if window is None:
            window = self.renditions[name] = SegmentWindow(self.span)
        return window

    def expire(self, now: float) -> None:
        """Bring every window up to ``now`` (a stream that went quiet still ages)."""
        for window in self.renditions.values():
            window.expire(now)
        if self.media is not None:
            self.media.expire(now)


class IngestMetrics:
    """The windows of every stream whose media reaches this process, plus process totals.

    The observers never do I/O and never raise for odd input; streams are dropped by
    ``retain`` (the publisher calls it every tick) and, past ``max_streams``, oldest first.
    """

    def __init__(
        self,
        span: float = DEFAULT_WINDOW,
        *,
        clock: Clock = time.monotonic,
        max_streams: int = 10_000,
    ) -> None:
        self.span = span
        self.clock = clock
        self.max_streams = max_streams
        self.streams: dict[int, StreamMetrics] = {}
        self.work = WorkHistogram.empty()
        self.segments_total = 0
        self.segment_bytes_total = 0
        self.late_total = 0
        self.media_messages_total = 0
        self.media_bytes_total = 0

    def _stream(self, session_id: int, channel_id: int) -> StreamMetrics:
        stream = self.streams.get(session_id)
        if stream is None:
            if len(self.streams) >= self.max_streams:
                del self.streams[next(iter(self.streams))]
            stream = self.streams[session_id] = StreamMetrics(session_id, channel_id, self.span)
        return stream

    def on_segment(self, event: SegmentEvent) -> None:
        """Observer of ``SessionHooks.on_segment``: count one accepted segment."""
        if not (event.duration > 0 and math.isfinite(event.duration)) or event.byte_size < 0:
            return
        stream = self._stream(event.session_id, event.channel_id)
        window = stream.rendition(event.rendition)
        stream.last_at = now = self.clock()
        late = window.add(
            now,
            event.duration,
            event.byte_size,
            event.video_frames,
            keyframe=event.keyframe,
            discontinuity=event.discontinuity,
        )
        self.segments_total += 1
        self.segment_bytes_total += event.byte_size
        self.late_total += late
        self.work.observe(max(event.work_seconds, 0.0))

    def on_media(self, event: MediaEvent) -> None:
        """Observer of ``SessionHooks.on_media``: count one RTMP audio/video message."""
        stream = self._stream(event.session_id, event.channel_id)
        if stream.media is None:
            stream.media = MediaWindow(self.span)
        stream.last_at = now = self.clock()
        stream.media.add(now, event.kind, event.timestamp_ms, event.byte_size, event.keyframe)
        self.media_messages_total += 1
        self.media_bytes_total += event.byte_size

    def get(self, session_id: int) -> StreamMetrics | None:
        """Return the windows of ``session_id`` (None before its first media)."""
        return self.streams.get(session_id)

    def retain(self, session_ids: set[int]) -> None:
        """Forget every stream not in ``session_ids`` (sessions this process no longer holds)."""
        for session_id in [s for s in self.streams if s not in session_ids]:
            del self.streams[session_id]
