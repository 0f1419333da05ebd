"""Extension points of the session lifecycle, for domains above ``live`` (the VOD library).

``live`` cannot import the domains built on it, so they register here at start-up. Hooks in
``on_ended`` run inside the transaction that ends a session: what they write commits with the
end or not at all (this is how a VOD job is made durable exactly when a session ends).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class EndedSession:
    """A session that has just ended."""

    session_id: int
    channel_id: int
    title: str
    started_at: datetime | None
    ended_at: datetime
    reason: str


@dataclass(frozen=True)
class SegmentEvent:
    """One segment accepted into a live session (for metrics; no I/O allowed in observers)."""

    session_id: int
    channel_id: int
    rendition: str
    sequence: int
    start_time: float  # seconds: media time of the first sample (tfdt) in this packager run
    duration: float  # seconds of media
    byte_size: int
    video_frames: int
    keyframe: bool
    discontinuity: bool
    work_seconds: float  # server time from receipt to playlist updated


@dataclass(frozen=True)
class MediaEvent:
    """One RTMP audio or video message of a live session (observers must be O(1), no I/O)."""

    session_id: int
    channel_id: int
    kind: str  # "audio" or "video"
    timestamp_ms: int
    byte_size: int
    keyframe: bool


@dataclass(frozen=True)
class ListedSegment:
    """A segment just listed, with its bytes and its init segment's (for restreaming).

    Observers run on the live edge: they may only hand the bytes on (O(1), no I/O).
    """

    session_id: int
    channel_id: int
    rendition: str
    epoch: int
    sequence: int
    init: bytes
    data: bytes


@dataclass(frozen=True)
class ViewEvent:
    """A player fetched a live media playlist (one per viewer and refresh)."""

    session_id: int
    channel_id: int
    viewer_id: str  # the playback session id the master playlist handed out (``vs``)


EndHook = Callable[[AsyncConnection, EndedSession], Awaitable[None]]
SegmentObserver = Callable[[SegmentEvent], None]
MediaObserver = Callable[[MediaEvent], None]
ViewObserver = Callable[[ViewEvent], None]
ListedObserver = Callable[[ListedSegment], None]
ClosedObserver = Callable[[int], None]  # a session this process held closed its playlists


@dataclass
class SessionHooks:
    """Callbacks the session manager runs at lifecycle points."""

    on_ended: list[EndHook] = field(default_factory=list)
    on_segment: list[SegmentObserver] = field(default_factory=list)
    on_media: list[MediaObserver] = field(default_factory=list)
    on_view: list[ViewObserver] = field(default_factory=list)
    on_listed: list[ListedObserver] = field(default_factory=list)
    on_closed: list[ClosedObserver] = field(default_factory=list)
