"""Cut a rendition's fMP4 fragments into LL-HLS parts and whole segments.

ffmpeg writes each rendition as fragmented MP4 with a fragment about every frame (a ``moof``
and its ``mdat``); ``Cutter`` groups consecutive fragments into parts of a frame-aligned
duration (a whole number of frame durations, fixed for the session as ``PartTarget``) and
parts into segments that start at an independent (key) frame once the segment length is
reached. A part is a run of whole fragments, so its bytes are valid CMAF as they are, and a
segment is the concatenation of its parts. Durations are seconds.

Rules (draft-pantos-hls-rfc8216bis 4.4.4.9 and Apple's authoring rules): a part is never
longer than the part target; it is at least 85 % of it unless it is the last part of its
segment (cut short by the next segment's key frame), and the first part of a segment is
independent (starts with a key frame).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from stagecast.live.fmp4 import SegmentInfo

# Apple: part targets of about a third of a second are the usual choice; the draft wants them
# between 0.2 and 0.5 s for most content here.
PART_SECONDS = 1 / 3
PART_MIN = 0.2
PART_MAX = 0.5
# Well-known frame rates: a measured frame duration (timestamps rounded to milliseconds by
# FLV) is snapped to the nearest of these, so a part is a whole number of true frames.
_RATES = (23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0)
_EPSILON = 0.0015  # timestamps in FLV are whole milliseconds: two of those, and a bit
MEASURE_FRAGMENTS = 4  # fragments held back once per session to measure the frame duration


@dataclass(frozen=True, slots=True)
class PartTarget:
    """The part target of a session: ``seconds`` (EXT-X-PART-INF) and the frame duration."""

    seconds: float
    frame: float

    @property
    def frames(self) -> int:
        """Return how many frames a full part holds."""
        return max(1, round(self.seconds / self.frame - 0.01))


def part_target_for(frame: float) -> PartTarget:
    """Return the part target for frames (or audio frames) of ``frame`` seconds.

    A whole number of frames close to a third of a second, kept within 0.2 to 0.5 s, rounded up
    to the millisecond so a part measured from millisecond timestamps never exceeds it.
    Raises ValueError for a frame duration that is not a positive finite number.
    """
    if not math.isfinite(frame) or frame <= 0:
        raise ValueError("frame duration must be a positive number of seconds")
    rate = 1 / frame
    if frame < 0.1:
        nearest = min(_RATES, key=lambda r: abs(r - rate))
        if abs(nearest - rate) / nearest < 0.05:
            frame = 1 / nearest
    count = max(1, round(PART_SECONDS / frame))
    while count > 1 and count * frame > PART_MAX:
        count -= 1
    while count * frame < PART_MIN and (count + 1) * frame <= PART_MAX:
        count += 1
    return PartTarget(math.ceil(count * frame * 1000 - 1e-6) / 1000, frame)


@dataclass(frozen=True, slots=True)
class Part:
    """One part: its bytes (whole fragments), duration, and whether it starts a segment.

    ``independent`` says the part starts with a key frame (always true for ``first``).
    """

    data: bytes
    duration: float
    independent: bool
    first: bool


@dataclass(frozen=True, slots=True)
class SegmentEnd:
    """The segment the previous parts belong to is complete: ``data`` is all of it."""

    data: bytes


Cut = Part | SegmentEnd


class Cutter:
    """Group one rendition's fragments into parts and segments (one epoch).

    ``push`` takes each fragment in order with what ``parse_segment`` read from it, and
    returns what it completed: parts, and a ``SegmentEnd`` (the whole segment) after the last
    part of a segment. ``finish`` completes whatever is open when the stream ends.

    With ``target`` None the cutter measures it first: it holds back the first
    ``MEASURE_FRAGMENTS`` fragments from the first key frame on and takes the shortest frame
    among them (an encoder's first frame often lasts until the second timestamp). A session
    passes the target of its first epoch to the later ones: it must not change.
    """

    def __init__(
        self, target: PartTarget | None, segment_seconds: float, *, has_video: bool
    ) -> None:
        self.target = target
        self._has_video = has_video
        self._segment_seconds = segment_seconds
        self._measuring: list[tuple[bytes, SegmentInfo]] = []
        self._segment: list[bytes] = []  # the parts of the open segment
        self._chunks: list[bytes] = []
        self._duration = 0.0
        self._frames = 0
        self._independent = False
        self._first = True
        self._segment_duration = 0.0
        self._open = False  # a segment has begun

    def push(self, data: bytes, info: SegmentInfo) -> list[Cut]:
        """Take one fragment; return the parts (and segment end) it completed."""
        if self.target is not None:
            return self._push(data, info)
        if not self._measuring and not (
            info.starts_with_keyframe and (info.video_frames or not self._has_video)
        ):
            return []  # before the first key frame: no segment can start there
        self._measuring.append((data, info))
        if len(self._measuring) < MEASURE_FRAGMENTS:
            return []
        return self._measured()

    def _measured(self) -> list[Cut]:
        frames = [
            i.duration / i.video_frames if self._has_video else i.duration
            for _, i in self._measuring
            if (i.video_frames or not self._has_video) and i.duration > 0
        ]
        self.target = part_target_for(min(frames) if frames else 1 / 30)
        held, self._measuring = self._measuring, []
        return [cut for data, info in held for cut in self._push(data, info)]

    def _push(self, data: bytes, info: SegmentInfo) -> list[Cut]:
        assert self.target is not None
        out: list[Cut] = []
        video = info.video_frames > 0
        # Time is counted on the video track when there is one: a fragment holding only audio
        # (ffmpeg flushes on either track) adds its bytes to the part, not its duration.
        main = video or not self._has_video
        step = info.duration if main else 0.0
        key = main and info.starts_with_keyframe
        starts_segment = key and (
            not self._open or self._segment_duration >= self._segment_seconds - _EPSILON
        )
        if starts_segment and self._open:
            self._close_part(out)
            self._end_segment(out)
            self._segment_duration = 0.0
            self._first = True
        elif self._chunks and self._duration + step > self.target.seconds + _EPSILON:
            self._close_part(out)
        if not self._open and not starts_segment:
            return out  # before the first key frame: nothing can start a segment
        if not self._chunks:
            self._independent = key
        self._open = True
        self._chunks.append(data)
        self._duration += step
        self._segment_duration += step
        self._frames += info.video_frames
        full = self._duration >= self.target.seconds - _EPSILON or (
            video and self._frames >= self.target.frames
        )
        if full:
            self._close_part(out)
        return out

    def finish(self) -> list[Cut]:
        """Complete the open part and segment (the stream ended)."""
        out: list[Cut] = self._measured() if self._measuring else []
        if self._chunks:
            self._close_part(out)
        if self._open:
            self._end_segment(out)
            self._open = False
        return out

    def _end_segment(self, out: list[Cut]) -> None:
        out.append(SegmentEnd(b"".join(self._segment)))
        self._segment = []

    def _close_part(self, out: list[Cut]) -> None:
        if not self._chunks:
            return
        part = Part(b"".join(self._chunks), self._duration, self._independent, self._first)
        out.append(part)
        self._segment.append(part.data)
        self._chunks = []
        self._duration = 0.0
        self._frames = 0
        self._first = False


class HeldParts:
    """The parts of one rendition kept in memory, by number, for ``keep`` seconds of media.

    The playlist lists parts for three target durations; they stay downloadable for three
    more (a player that read an older playlist can still fetch them), then are forgotten.
    """

    def __init__(self) -> None:
        self._held: deque[tuple[int, float, bytes]] = deque()  # (number, media end, bytes)
        self._elapsed = 0.0

    def add(self, number: int, part: Part, keep: float) -> None:
        """Hold ``part`` as ``number``; forget parts that ended more than ``keep`` s ago."""
        self._elapsed += part.duration
        self._held.append((number, self._elapsed, part.data))
        while self._held and self._held[0][1] < self._elapsed - keep:
            self._held.popleft()

    def get(self, number: int) -> bytes | None:
        """Return part ``number``'s bytes, or None if it is not (or no longer) held."""
        if not self._held:
            return None
        index = number - self._held[0][0]
        if 0 <= index < len(self._held):
            held = self._held[index]
            if held[0] == number:
                return held[2]
        return None

    def clear(self) -> None:
        """Forget every part."""
        self._held.clear()
