"""Snapshots: what one live stream looks like this second, built from memory only.

``Snapshots.build`` reads the sessions the live manager holds, their ingest windows and their
viewer counts, judges health, and returns one JSON-able dict per stream; it does no I/O.
A stream's snapshot is one dict updated in place every tick (the bus copies or serializes
what it publishes), and parts that did not change (rendition summaries, viewer counts, a good
verdict) are reused rather than rebuilt: most of a tick's cost is making dicts.

Snapshot (JSON)::

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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from stagecast.studio.health import GOOD, Health, Reading, Thresholds, Verdict, assess
from stagecast.studio.presence import NONE, ViewerCounts
from stagecast.studio.telemetry import IngestMetrics, StreamMetrics
from stagecast.studio.windows import SegmentReading

LIVE_STATES = ("live", "reconnecting")


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


@dataclass
class Tracked:
    """What is remembered about a session between ticks."""

    dropped: int
    reconnects: int
    recent: deque[tuple[float, int, int]] = field(default_factory=deque)  # (at, drops, reconnects)
    dropped_recent: int = 0
    reconnects_recent: int = 0
    announced: bool = False
    snapshot: dict[str, Any] | None = None  # this session's snapshot, updated every tick
    # Rendition summaries by name, with the window state they were made from: a window only
    # changes when a segment arrives or ages out (every few seconds), so most ticks reuse them.
    renditions: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _started: float | None = None
    _viewers: tuple[ViewerCounts, dict[str, int]] | None = None

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

    def viewers_json(self, viewers: ViewerCounts) -> dict[str, int]:
        """Return the wire form of ``viewers``, the last tick's object when they did not change."""
        if self._viewers is None or self._viewers[0] != viewers:
            self._viewers = (viewers, viewers._asdict())
        return self._viewers[1]

    def rendition(self, name: str, version: int, figures: SegmentReading) -> dict[str, Any]:
        """Return the wire form of a rendition's window, the last one if it did not change."""
        cached = self.renditions.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        summary = _summary(name, figures)
        self.renditions[name] = (version, summary)
        return summary


def _round(value: float | None, scale: int = 10) -> float | None:
    """Round a non-negative value to 1/``scale`` (``round(x, n)`` is 8x slower)."""
    return None if value is None else int(value * scale + 0.5) / scale


# Snapshots are read-only once built, so parts that did not change are shared between them.
_GOOD_JSON = GOOD.as_json()


def _health_json(health: Health) -> dict[str, object]:
    return _GOOD_JSON if health is GOOD else health.as_json()


def _kilo(bps: float | None) -> float | None:
    """Return bits per second as kbps with one decimal."""
    return None if bps is None else int(bps / 100 + 0.5) / 10


def _same(new: list[dict[str, Any]], old: list[dict[str, Any]]) -> bool:
    """Tell whether two lists hold the very same summaries (cheaper than comparing them)."""
    return len(new) == len(old) and all(a is b for a, b in zip(new, old, strict=True))


def _summary(name: str, figures: SegmentReading) -> dict[str, Any]:
    """Return the wire form of one rendition's window."""
    return {
        "name": name,
        "bitrate_kbps": _kilo(figures.bitrate_bps),
        "frame_rate": _round(figures.frame_rate, 100),
        "segment_duration": _round(figures.mean_duration, 1000),
        "segment_jitter": _round(figures.jitter, 1000),
        "segments": figures.segments,
        "late_segments": figures.late,
    }


class Snapshots:
    """The snapshot of every held stream, rebuilt each tick (pure: no I/O)."""

    def __init__(self, ingest: IngestMetrics, thresholds: Thresholds | None = None) -> None:
        self.ingest = ingest
        self.thresholds = thresholds or Thresholds()
        self.latest: dict[int, dict[str, Any]] = {}  # by channel id
        self.segments_dropped = 0  # by the sessions of this process, since it started
        self._tracked: dict[int, Tracked] = {}

    def build(
        self,
        held: Sequence[Held],
        counts: dict[int, ViewerCounts],
        now: float,
        wall: datetime,
    ) -> list[dict[str, Any]]:
        """Return the snapshots of ``held`` at ``now`` (pure: no I/O)."""
        at = wall.isoformat()
        wall_ts = wall.timestamp()
        span = self.ingest.span
        streams = self.ingest.streams
        tracked_all = self._tracked
        snapshots = []
        latest: dict[int, dict[str, Any]] = {}
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
            if stream is not None:
                stream.expire(now)
            snapshot = self._snapshot(session, stream, tracked, counts.get(session.id, NONE), now)
            snapshot["at"] = at
            started = tracked.started(session)
            if started is not None:
                snapshot["uptime"] = _round(max(wall_ts - started, 0.0))
            latest[session.channel_id] = snapshot
            snapshots.append(snapshot)
        self.latest = latest
        return snapshots

    def _snapshot(
        self,
        session: Held,
        stream: StreamMetrics | None,
        tracked: Tracked,
        viewers: ViewerCounts,
        now: float,
    ) -> dict[str, Any]:
        last_at = session.last_media
        renditions: list[dict[str, Any]] = []
        bitrate = frame_rate = gop = gop_max = jitter = None
        measured = 0.0
        late = 0
        if stream is not None:
            if stream.last_at is not None and stream.last_at > last_at:
                last_at = stream.last_at
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
            if stream.media is not None:
                media = stream.media.reading()
                if media.bitrate_bps is not None:
                    bitrate, measured, frame_rate = media.bitrate_bps, media.span, media.frame_rate
                    if media.keyframe_max is not None:
                        gop, gop_max = media.keyframe_mean, media.keyframe_max
        since = now - last_at if now > last_at else 0.0
        reading = Reading(
            session.state,
            since,
            measured,
            gop_max,
            frame_rate,
            jitter,
            tracked.dropped_recent,
            late,
            session.unarchived,
            tracked.reconnects_recent,
        )
        health = _health_json(assess(reading, self.thresholds))
        snapshot = tracked.snapshot
        if snapshot is None:
            snapshot = tracked.snapshot = {
                "type": "snapshot",
                "channel_id": session.channel_id,
                "session_id": session.id,
                "slug": session.slug,
                "state": session.state,
                "at": None,
                "uptime": None,
                "health": health,
                "viewers": tracked.viewers_json(viewers),
                "ingest": {},
                "renditions": renditions,
            }
        else:
            # Updated in place: the bus copies (or serializes) what it publishes, and a dict
            # per stream per tick is most of what a tick would otherwise cost.
            snapshot["state"] = session.state
            snapshot["health"] = health
            snapshot["viewers"] = tracked.viewers_json(viewers)
            if not _same(renditions, snapshot["renditions"]):
                snapshot["renditions"] = renditions
        part = snapshot["ingest"]
        part["bitrate_kbps"] = _kilo(bitrate)
        part["frame_rate"] = _round(frame_rate, 100)
        part["keyframe_interval"] = _round(gop, 100)
        part["keyframe_interval_max"] = _round(gop_max, 100)
        part["since_media"] = _round(since, 100)
        part["segments_dropped"] = session.segments_dropped
        part["segments_dropped_recent"] = tracked.dropped_recent
        part["late_segments"] = late
        part["reconnects"] = session.reconnects
        part["unarchived"] = session.unarchived
        return snapshot

    def retire(self, held: Sequence[Held], ended_at: str) -> tuple[list[int], list[dict[str, Any]]]:
        """Forget sessions no longer held; return their ids and final (offline) snapshots."""
        current = {s.id for s in held}
        gone = [sid for sid in self._tracked if sid not in current]
        finals = []
        for session_id in gone:
            tracked = self._tracked.pop(session_id)
            if tracked.snapshot is not None:
                final = dict(tracked.snapshot)
                final["state"] = "ended"
                final["health"] = {"verdict": Verdict.OFFLINE.value, "reasons": ["not live"]}
                final["at"] = ended_at
                finals.append(final)
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
