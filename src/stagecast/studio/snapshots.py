"""Snapshots: what one live stream looks like this second, built from memory only.

``Snapshots.build`` reads the sessions the live manager holds, their ingest windows and their
viewer counts, judges health, and returns one frozen ``Snapshot`` per stream; it does no I/O.
The publisher sends them on ``SNAPSHOT_TOPIC`` (``studio.<channel_id>``); readers in other
processes get them back with ``SNAPSHOT_TOPIC.decode``.

Building frozen values costs more than updating a dict in place, so a tick builds only what
changed: a stream's window figures are kept until a window's version or its media reading
changes, its ingest figures and verdict until one of their inputs does, and rendition summaries,
viewer counts and the good verdict are the very instances of the last tick. Only the snapshot
itself (its ``at`` and ``uptime`` move every second) is new each tick.

Snapshot (JSON, as on the bus and in the studio feed's ``snapshot`` event)::

    {"type": "snapshot", "channel_id": 3, "session_id": 9, "slug": "show", "state": "live",
     "at": "2024-05-01T18:00:00+00:00", "uptime": 61.0,
     "health": {"verdict": "good", "reasons": []},
     "viewers": {"current": 4, "peak": 6, "unique": 11},
     "ingest": {"bitrate_kbps": 2510.3, "frame_rate": 30.0, "keyframe_interval": 2.0,
                "keyframe_interval_max": 2.0, "since_media": 0.02, "segments_dropped": 0,
                "segments_dropped_recent": 0, "late_segments": 0, "reconnects": 0,
                "unarchived": 0},
     "renditions": [{"name": "source", "bitrate_kbps": 2498.7, "frame_rate": 30.0,
                     "segment_duration": 2.0, "segment_jitter": 0.0, "segments": 15,
                     "late_segments": 0}]}
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

from stagecast.bus.base import Payload
from stagecast.bus.topics import Topic
from stagecast.live.states import SessionState
from stagecast.studio.health import GOOD, OFFLINE, Health, Reading, Thresholds, assess
from stagecast.studio.presence import NONE, ViewerCounts
from stagecast.studio.telemetry import IngestMetrics, StreamMetrics
from stagecast.studio.windows import MediaReading, SegmentReading

# The payload types below are frozen but not slotted: orjson writes a plain dataclass from its
# ``__dict__`` about 3x faster than a slotted one (attribute by attribute), and every watched
# stream's snapshot is serialised each second; construction costs the same either way.


@dataclass(frozen=True)
class RenditionFigures:
    """One rendition's window: kbps, frames per second, segment seconds and counts."""

    name: str
    bitrate_kbps: float | None
    frame_rate: float | None
    segment_duration: float | None
    segment_jitter: float | None
    segments: int
    late_segments: int


@dataclass(frozen=True)
class IngestFigures:
    """What the encoder sends, over the window (kbps, fps, seconds; counts since the start
    unless ``_recent``: within the window)."""

    bitrate_kbps: float | None
    frame_rate: float | None
    keyframe_interval: float | None
    keyframe_interval_max: float | None
    since_media: float | None
    segments_dropped: int
    segments_dropped_recent: int
    late_segments: int
    reconnects: int
    unarchived: int


@dataclass(frozen=True)
class ViewerFigures:
    """Viewers now, at the peak, and distinct ones since the session began."""

    current: int
    peak: int
    unique: int


@dataclass(frozen=True)
class Snapshot:
    """One live stream at one second (``at``; ``uptime`` in seconds since it started)."""

    # Declared first so that it leads the JSON, as it always has; keyword-only for its default.
    type: Literal["snapshot"] = field(default="snapshot", kw_only=True)
    channel_id: int
    session_id: int
    slug: str
    state: SessionState
    at: datetime
    uptime: float | None
    health: Health
    viewers: ViewerFigures
    ingest: IngestFigures
    renditions: tuple[RenditionFigures, ...]


# ``studio.<channel_id>``: every second while a session is held, and once more when it ends.
SNAPSHOT_TOPIC: Topic[Snapshot] = Topic("studio.{}", Snapshot)


# A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``: 1.1 µs for a
# snapshot's 11 fields, against 0.45 µs to set the instance's dict at once, and a tick makes a
# snapshot per stream (plus ingest figures and rendition summaries when they change). These
# builders make exactly what the constructors make (a test holds them together), faster.
_new = object.__new__
_set = object.__setattr__


def _rendition(
    name: str,
    bitrate_kbps: float | None,
    frame_rate: float | None,
    segment_duration: float | None,
    segment_jitter: float | None,
    segments: int,
    late_segments: int,
) -> RenditionFigures:
    """Return ``RenditionFigures(...)`` of these fields."""
    value = _new(RenditionFigures)
    _set(
        value,
        "__dict__",
        {
            "name": name,
            "bitrate_kbps": bitrate_kbps,
            "frame_rate": frame_rate,
            "segment_duration": segment_duration,
            "segment_jitter": segment_jitter,
            "segments": segments,
            "late_segments": late_segments,
        },
    )
    return value


def _ingest(
    bitrate_kbps: float | None,
    frame_rate: float | None,
    keyframe_interval: float | None,
    keyframe_interval_max: float | None,
    since_media: float | None,
    segments_dropped: int,
    segments_dropped_recent: int,
    late_segments: int,
    reconnects: int,
    unarchived: int,
) -> IngestFigures:
    """Return ``IngestFigures(...)`` of these fields."""
    value = _new(IngestFigures)
    _set(
        value,
        "__dict__",
        {
            "bitrate_kbps": bitrate_kbps,
            "frame_rate": frame_rate,
            "keyframe_interval": keyframe_interval,
            "keyframe_interval_max": keyframe_interval_max,
            "since_media": since_media,
            "segments_dropped": segments_dropped,
            "segments_dropped_recent": segments_dropped_recent,
            "late_segments": late_segments,
            "reconnects": reconnects,
            "unarchived": unarchived,
        },
    )
    return value


def _snapshot(
    channel_id: int,
    session_id: int,
    slug: str,
    state: SessionState,
    at: datetime,
    uptime: float | None,
    health: Health,
    viewers: ViewerFigures,
    ingest: IngestFigures,
    renditions: tuple[RenditionFigures, ...],
) -> Snapshot:
    """Return ``Snapshot(...)`` of these fields."""
    value = _new(Snapshot)
    _set(
        value,
        "__dict__",
        {
            "type": "snapshot",
            "channel_id": channel_id,
            "session_id": session_id,
            "slug": slug,
            "state": state,
            "at": at,
            "uptime": uptime,
            "health": health,
            "viewers": viewers,
            "ingest": ingest,
            "renditions": renditions,
        },
    )
    return value


def message(snapshot: Snapshot) -> Payload:
    """Return what ``SNAPSHOT_TOPIC.encode(snapshot)`` returns, without making it.

    The snapshot's own dict holds its fields in order, so it is that message. It goes to the
    bus, which serialises a payload as it publishes it and keeps nothing (both buses do), so
    the snapshot stays as it was; a copy would cost 0.3 µs and field by field 0.7 µs, per
    stream per tick.
    """
    return vars(snapshot)


_STATES = {state.value: state for state in SessionState}  # a lookup, not an Enum call per tick


class Held(Protocol):
    """What the publisher reads from a live session (``stagecast.live.session.LiveSession``)."""

    id: int
    channel_id: int
    slug: str
    reconnects: int
    segments_dropped: int
    last_media: float
    started_at: datetime | None

    @property
    def state(self) -> str:
        """Return the session's state (a ``stagecast.live.states.SessionState``)."""

    @property
    def unarchived(self) -> int:
        """Return how many segments wait for their database row."""

    @property
    def unstored(self) -> int:
        """Return how many of its files wait in this node's spool for the media storage."""


@dataclass(slots=True, eq=False)  # compared by identity: a new one means something changed
class Windows:
    """What a stream's windows say at one tick (bits per second, frames per second, seconds).

    Internal and never changed once made; not frozen, because it is made per stream at every
    tick a window changes, and a frozen dataclass costs 5x more to make.
    """

    renditions: tuple[RenditionFigures, ...]
    bitrate: float | None
    frame_rate: float | None
    gop: float | None
    gop_max: float | None
    jitter: float | None
    measured: float
    late: int


_NO_WINDOWS = Windows((), None, None, None, None, None, 0.0, 0)
# The inputs of a stream's ingest figures and verdict besides its windows: (state, seconds
# since media, segments dropped, dropped recently, reconnects, reconnects recently, unarchived).
_Inputs = tuple[str, float, int, int, int, int, int, int]


@dataclass
class Tracked:
    """What is remembered about a session between ticks."""

    dropped: int
    reconnects: int
    recent: deque[tuple[float, int, int]] = field(default_factory=deque)  # (at, drops, reconnects)
    dropped_recent: int = 0
    reconnects_recent: int = 0
    announced: bool = False
    snapshot: Snapshot | None = None  # this session's latest snapshot
    # Rendition summaries by name, with the window version they were made from: a window only
    # changes when a segment arrives or ages out (every few seconds), so most ticks reuse them.
    renditions: dict[str, tuple[int, RenditionFigures]] = field(default_factory=dict)
    _started: float | None = None
    _viewers: tuple[ViewerCounts, ViewerFigures] | None = None
    # The last tick's window figures, with the version sum and media reading they came from
    # (attributes rather than a tuple: every object a tick allocates is work for the GC).
    windows: Windows = _NO_WINDOWS
    windows_version: int = -1
    windows_media: MediaReading | None = None
    # The last tick's ingest figures (with their values) and verdict, and the windows and
    # inputs they came from.
    judged_windows: Windows | None = None
    judged_inputs: _Inputs | None = None
    ingest: IngestFigures | None = None
    ingest_values: tuple[object, ...] = ()
    health: Health = GOOD

    def update(self, session: Held, now: float, span: float) -> int:
        """Follow the session's counters; return the segments dropped since the last tick."""
        drops = max(session.segments_dropped - self.dropped, 0)
        reconnects = max(session.reconnects - self.reconnects, 0)
        self.dropped, self.reconnects = session.segments_dropped, session.reconnects
        if drops or reconnects:
            self.recent.append((now, drops, reconnects))
            self.dropped_recent += drops
            self.reconnects_recent += reconnects
        while self.recent and self.recent[0][0] <= now - span:
            _, old_drops, old_reconnects = self.recent.popleft()
            self.dropped_recent -= old_drops
            self.reconnects_recent -= old_reconnects
        return drops

    def started(self, session: Held) -> float | None:
        """Return the session's start as a POSIX timestamp (converted once)."""
        if self._started is None and session.started_at is not None:
            self._started = session.started_at.timestamp()
        return self._started

    def viewer_figures(self, viewers: ViewerCounts) -> ViewerFigures:
        """Return ``viewers`` as figures, the last tick's instance when they did not change."""
        if self._viewers is None or self._viewers[0] != viewers:
            self._viewers = (viewers, ViewerFigures(*viewers))
        return self._viewers[1]

    def rendition(self, name: str, version: int, figures: SegmentReading) -> RenditionFigures:
        """Return the summary of a rendition's window, the last one if it did not change."""
        cached = self.renditions.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        summary = _summary(name, figures)
        self.renditions[name] = (version, summary)
        return summary


def _round(value: float | None, scale: int = 10) -> float | None:
    """Round a non-negative value to 1/``scale`` (``round(x, n)`` is 8x slower)."""
    return None if value is None else int(value * scale + 0.5) / scale


def _kilo(bps: float | None) -> float | None:
    """Return bits per second as kbps with one decimal."""
    return None if bps is None else int(bps / 100 + 0.5) / 10


def _summary(name: str, figures: SegmentReading) -> RenditionFigures:
    """Return the summary of one rendition's window."""
    return _rendition(
        name,
        _kilo(figures.bitrate_bps),
        _round(figures.frame_rate, 100),
        _round(figures.mean_duration, 1000),
        _round(figures.jitter, 1000),
        figures.segments,
        figures.late,
    )


def _measure(stream: StreamMetrics, tracked: Tracked, media: MediaReading | None) -> Windows:
    """Return what ``stream``'s windows say now (rendition summaries and stream figures)."""
    renditions = []
    bitrate = frame_rate = gop = gop_max = jitter = None
    measured = 0.0
    late = 0
    total_bps = 0.0
    for name, window in stream.renditions.items():
        figures = window.reading()
        renditions.append(tracked.rendition(name, window.version, figures))
        total_bps += figures.bitrate_bps or 0.0
        late += figures.late
        if figures.duration > measured:
            measured = figures.duration
        fps, spread = figures.frame_rate, figures.jitter
        if fps is not None and (frame_rate is None or fps > frame_rate):
            frame_rate = fps
        if spread is not None and (jitter is None or spread > jitter):
            jitter = spread
        if gop is None and figures.keyframe_max is not None:
            gop, gop_max = figures.keyframe_mean, figures.keyframe_max
    bitrate = total_bps or None
    if media is not None and media.bitrate_bps is not None:
        bitrate, measured, frame_rate = media.bitrate_bps, media.span, media.frame_rate
        if media.keyframe_max is not None:
            gop, gop_max = media.keyframe_mean, media.keyframe_max
    return Windows(tuple(renditions), bitrate, frame_rate, gop, gop_max, jitter, measured, late)


class Snapshots:
    """The snapshot of every held stream, rebuilt each tick (pure: no I/O)."""

    def __init__(self, ingest: IngestMetrics, thresholds: Thresholds | None = None) -> None:
        self.ingest = ingest
        self.thresholds = thresholds or Thresholds()
        self.latest: dict[int, Snapshot] = {}  # by channel id
        self.segments_dropped = 0  # by the sessions of this process, since it started
        self._tracked: dict[int, Tracked] = {}

    def build(
        self,
        held: Sequence[Held],
        counts: dict[int, ViewerCounts],
        now: float,
        wall: datetime,
    ) -> list[Snapshot]:
        """Return the snapshots of ``held`` at ``now`` (monotonic) and ``wall`` (pure: no I/O)."""
        wall_ts = wall.timestamp()
        span = self.ingest.span
        streams = self.ingest.streams
        tracked_all = self._tracked
        snapshots = []
        latest: dict[int, Snapshot] = {}
        for session in held:
            tracked = tracked_all.get(session.id)
            if tracked is None:
                tracked = tracked_all[session.id] = Tracked(
                    session.segments_dropped, session.reconnects
                )
            if (
                tracked.recent
                or session.segments_dropped != tracked.dropped
                or session.reconnects != tracked.reconnects
            ):
                self.segments_dropped += tracked.update(session, now, span)
            stream = streams.get(session.id)
            started = tracked.started(session)
            uptime = None if started is None else _round(max(wall_ts - started, 0.0))
            windows = self._windows(stream, tracked, now)
            ingest, health = self._judge(session, stream, windows, tracked, now)
            snapshot = tracked.snapshot = _snapshot(
                session.channel_id,
                session.id,
                session.slug,
                _STATES[session.state],
                wall,
                uptime,
                health,
                tracked.viewer_figures(counts.get(session.id, NONE)),
                ingest,
                windows.renditions,
            )
            latest[session.channel_id] = snapshot
            snapshots.append(snapshot)
        self.latest = latest
        return snapshots

    def _windows(self, stream: StreamMetrics | None, tracked: Tracked, now: float) -> Windows:
        """Return the stream's window figures, the last tick's if no window changed."""
        if stream is None:
            tracked.windows, tracked.windows_version = _NO_WINDOWS, -1
            return _NO_WINDOWS
        stream.expire(now)
        # A window's version only grows, and grows whenever it changes: the sum of the versions
        # (with the number of windows) changes exactly when one of them did.
        version = len(stream.renditions)
        for window in stream.renditions.values():
            version += window.version
        media = stream.media.reading() if stream.media is not None else None
        if tracked.windows_version == version and tracked.windows_media == media:
            return tracked.windows
        windows = tracked.windows = _measure(stream, tracked, media)
        tracked.windows_version, tracked.windows_media = version, media
        return windows

    def _judge(
        self,
        session: Held,
        stream: StreamMetrics | None,
        windows: Windows,
        tracked: Tracked,
        now: float,
    ) -> tuple[IngestFigures, Health]:
        """Return the stream's ingest figures and verdict, the last tick's if nothing changed."""
        last_at = session.last_media
        if stream is not None and stream.last_at is not None and stream.last_at > last_at:
            last_at = stream.last_at
        since = now - last_at if now > last_at else 0.0
        inputs = (
            session.state,
            since,
            session.segments_dropped,
            tracked.dropped_recent,
            session.reconnects,
            tracked.reconnects_recent,
            session.unarchived,
            session.unstored,
        )
        if (
            tracked.ingest is not None
            and tracked.judged_windows is windows
            and tracked.judged_inputs == inputs
        ):
            return tracked.ingest, tracked.health
        reading = Reading(
            session.state,
            since,
            windows.measured,
            windows.gop_max,
            windows.frame_rate,
            windows.jitter,
            tracked.dropped_recent,
            windows.late,
            session.unarchived,
            tracked.reconnects_recent,
            session.unstored,
        )
        values = (
            _kilo(windows.bitrate),
            _round(windows.frame_rate, 100),
            _round(windows.gop, 100),
            _round(windows.gop_max, 100),
            _round(since, 100),
            session.segments_dropped,
            tracked.dropped_recent,
            windows.late,
            session.reconnects,
            session.unarchived,
        )
        # Raw inputs move every tick (seconds since media), the rounded figures far less often.
        ingest = tracked.ingest
        if ingest is None or tracked.ingest_values != values:
            ingest = tracked.ingest = _ingest(*values)
            tracked.ingest_values = values
        health = tracked.health = assess(reading, self.thresholds)
        tracked.judged_windows, tracked.judged_inputs = windows, inputs
        return ingest, health

    def retire(self, held: Sequence[Held], ended_at: datetime) -> tuple[list[int], list[Snapshot]]:
        """Forget sessions no longer held; return their ids and final (offline) snapshots."""
        current = {s.id for s in held}
        gone = [sid for sid in self._tracked if sid not in current]
        finals = []
        for session_id in gone:
            tracked = self._tracked.pop(session_id)
            if tracked.snapshot is not None:
                last = tracked.snapshot
                # Nobody watches a stream that ended; peak and unique describe the broadcast.
                viewers = ViewerFigures(0, last.viewers.peak, last.viewers.unique)
                finals.append(
                    replace(
                        last, state=SessionState.ENDED, health=OFFLINE, at=ended_at, viewers=viewers
                    )
                )
        self.ingest.retain(current)
        return gone, finals

    def newly_live(self, held: Sequence[Held]) -> list[Held]:
        """Return the sessions that went live since the last call (each once)."""
        found = []
        for session in held:
            tracked = self._tracked.get(session.id)
            if tracked is not None and not tracked.announced and session.state == "live":
                tracked.announced = True
                found.append(session)
        return found
