"""The health verdict of a live stream: ``good``, ``degraded``, ``bad`` or ``offline``, with why.

``assess`` is a pure function of a ``Reading`` (numbers the publisher takes from the ingest
windows each tick) and the ``Thresholds`` below. The verdict is the worst of the rules that
fire; each fired rule adds one human-readable reason, worst first, e.g.
``"keyframe interval 8.0 s > 4 s"`` or ``"no media for 6 s"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Keyframe interval (seconds): players join and switch renditions at keyframes only.
KEYFRAME_INTERVAL_DEGRADED = 4.0
KEYFRAME_INTERVAL_BAD = 10.0
# Silence (seconds since the last media message or segment); scaled up for long segments.
SILENCE_DEGRADED = 4.0
SILENCE_BAD = 8.0
# Video frame rate below this (frames per second) looks like a struggling encoder.
FRAME_RATE_DEGRADED = 10.0
# Standard deviation of segment durations (seconds) above this: irregular keyframes.
SEGMENT_JITTER_DEGRADED = 0.5
# Segments refused by the server (bad media) within the window.
DROPPED_DEGRADED = 1
DROPPED_BAD = 3
# Segments that arrived later than their own duration allows, within the window.
LATE_DEGRADED = 2
# Segments written but not yet archived (the database is slow).
UNARCHIVED_DEGRADED = 1
UNARCHIVED_BAD = 10
# Media files written but not yet in the object storage (the bucket is slow or away).
UNSTORED_DEGRADED = 1
UNSTORED_BAD = 30
# Encoder reconnects within the window.
RECONNECTS_DEGRADED = 1
# Media seconds a window must cover before rates are judged (the first seconds are noisy).
MIN_MEASURED = 2.0


class Verdict(StrEnum):
    """How a stream is doing, from best to worst."""

    GOOD = "good"
    DEGRADED = "degraded"
    BAD = "bad"
    OFFLINE = "offline"


_RANK = {Verdict.GOOD: 0, Verdict.DEGRADED: 1, Verdict.BAD: 2}


@dataclass(frozen=True)
class Thresholds:
    """The limits ``assess`` applies (seconds unless named otherwise)."""

    keyframe_degraded: float = KEYFRAME_INTERVAL_DEGRADED
    keyframe_bad: float = KEYFRAME_INTERVAL_BAD
    silence_degraded: float = SILENCE_DEGRADED
    silence_bad: float = SILENCE_BAD
    frame_rate_degraded: float = FRAME_RATE_DEGRADED
    jitter_degraded: float = SEGMENT_JITTER_DEGRADED

    @classmethod
    def for_segments(cls, segment_seconds: float) -> Thresholds:
        """Return the defaults, with silence limits of at least 2 and 4 segment durations.

        HTTP push delivers media one segment at a time, so a pause of one segment is normal.
        """
        return cls(
            silence_degraded=max(SILENCE_DEGRADED, 2 * segment_seconds),
            silence_bad=max(SILENCE_BAD, 4 * segment_seconds),
        )


@dataclass(slots=True)
class Reading:
    """What the publisher knows about one stream at one tick."""

    state: str  # the session state: idle, live, reconnecting, ended (or offline)
    since_media: float | None = None
    measured: float = 0.0  # media seconds the window covers
    keyframe_interval: float | None = None  # the longest in the window
    frame_rate: float | None = None
    jitter: float | None = None
    dropped: int = 0  # in the window
    late: int = 0  # in the window
    unarchived: int = 0
    reconnects: int = 0  # in the window
    unstored: int = 0  # files in this node's storage spool


@dataclass(frozen=True)
class Health:
    """A verdict and the reasons for it (empty when good)."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        """Return the wire form: ``{"verdict": ..., "reasons": [...]}``."""
        return {"verdict": self.verdict.value, "reasons": list(self.reasons)}


GOOD = Health(Verdict.GOOD)
OFFLINE = Health(Verdict.OFFLINE, ("not live",))


def _seconds(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def assess(reading: Reading, limits: Thresholds | None = None) -> Health:
    """Return the verdict for ``reading`` under ``limits`` (the defaults if None)."""
    if reading.state not in ("idle", "live", "reconnecting"):
        return OFFLINE
    t = limits or _DEFAULT
    if all_clear(reading, t):
        return GOOD
    found: list[tuple[Verdict, str]] = []
    if reading.state == "reconnecting":
        found.append((Verdict.BAD, "encoder disconnected; waiting for it to reconnect"))
    elif reading.state == "idle":
        found.append((Verdict.DEGRADED, "waiting for the first segment"))
    _silence(reading, t, found)
    _media(reading, t, found)
    _delivery(reading, found)
    if not found:
        return GOOD
    found.sort(key=lambda item: -_RANK[item[0]])
    return Health(found[0][0], tuple(reason for _, reason in found))


def all_clear(r: Reading, t: Thresholds) -> bool:
    """Tell, cheaply, that no rule fires (the common case, checked every second per stream).

    Exactly the negation of every rule below (a property test holds the two together).
    """
    return (
        r.state == "live"
        and (r.since_media is None or r.since_media <= t.silence_degraded)
        and (r.keyframe_interval is None or r.keyframe_interval <= t.keyframe_degraded)
        and (
            r.frame_rate is None
            or r.measured < MIN_MEASURED
            or r.frame_rate >= t.frame_rate_degraded
        )
        and (r.jitter is None or r.jitter <= t.jitter_degraded)
        and r.dropped < DROPPED_DEGRADED
        and r.late < LATE_DEGRADED
        and r.unarchived < UNARCHIVED_DEGRADED
        and r.reconnects < RECONNECTS_DEGRADED
        and r.unstored < UNSTORED_DEGRADED
    )


def _silence(reading: Reading, t: Thresholds, found: list[tuple[Verdict, str]]) -> None:
    silent = reading.since_media
    if reading.state == "reconnecting" or silent is None:
        return
    if silent > t.silence_bad:
        found.append((Verdict.BAD, f"no media for {silent:.0f} s"))
    elif silent > t.silence_degraded:
        found.append((Verdict.DEGRADED, f"no media for {silent:.0f} s"))


def _media(reading: Reading, t: Thresholds, found: list[tuple[Verdict, str]]) -> None:
    gop = reading.keyframe_interval
    if gop is not None and gop > t.keyframe_bad:
        found.append((Verdict.BAD, f"keyframe interval {gop:.1f} s > {_seconds(t.keyframe_bad)} s"))
    elif gop is not None and gop > t.keyframe_degraded:
        found.append(
            (Verdict.DEGRADED, f"keyframe interval {gop:.1f} s > {_seconds(t.keyframe_degraded)} s")
        )
    fps = reading.frame_rate
    if fps is not None and reading.measured >= MIN_MEASURED and fps < t.frame_rate_degraded:
        found.append(
            (Verdict.DEGRADED, f"frame rate {fps:.1f} fps < {_seconds(t.frame_rate_degraded)} fps")
        )
    jitter = reading.jitter
    if jitter is not None and jitter > t.jitter_degraded:
        found.append(
            (
                Verdict.DEGRADED,
                f"segment durations vary by {jitter:.2f} s > {_seconds(t.jitter_degraded)} s",
            )
        )


def _delivery(reading: Reading, found: list[tuple[Verdict, str]]) -> None:
    if reading.dropped >= DROPPED_BAD:
        found.append((Verdict.BAD, f"{reading.dropped} segments dropped recently"))
    elif reading.dropped >= DROPPED_DEGRADED:
        found.append((Verdict.DEGRADED, f"{reading.dropped} segment(s) dropped recently"))
    if reading.late >= LATE_DEGRADED:
        found.append((Verdict.DEGRADED, f"{reading.late} segments arrived late recently"))
    if reading.unarchived >= UNARCHIVED_BAD:
        found.append((Verdict.BAD, f"{reading.unarchived} segments waiting for the database"))
    elif reading.unarchived >= UNARCHIVED_DEGRADED:
        found.append(
            (Verdict.DEGRADED, f"{reading.unarchived} segment(s) waiting for the database")
        )
    if reading.unstored >= UNSTORED_BAD:
        found.append((Verdict.BAD, f"{reading.unstored} files waiting for the media storage"))
    elif reading.unstored >= UNSTORED_DEGRADED:
        found.append(
            (Verdict.DEGRADED, f"{reading.unstored} file(s) waiting for the media storage")
        )
    if reading.reconnects >= RECONNECTS_DEGRADED:
        found.append(
            (Verdict.DEGRADED, f"encoder reconnected {reading.reconnects} time(s) recently")
        )


_DEFAULT = Thresholds()
