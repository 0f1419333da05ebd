"""Low-Latency HLS media playlists: parts, preload hints, server control, delta updates.

``LowLatencyPlaylist`` is a ``MediaPlaylist`` (whole segments, the same window and the same
rules, so a standard player reads it as it always did) that also lists the parts of its most
recent segments and of the segment being made, per draft-pantos-hls-rfc8216bis:

- ``EXT-X-PART-INF:PART-TARGET`` (fixed for the session), ``EXT-X-PART`` lines before their
  segment's URI (``INDEPENDENT=YES`` where a part starts with a key frame), for the segments
  within the last three target durations; older parts leave the playlist (their bytes stay
  downloadable for three target durations more, see ``LiveSession``).
- ``EXT-X-PRELOAD-HINT`` naming the next part while the stream is live.
- ``EXT-X-SERVER-CONTROL`` with ``CAN-BLOCK-RELOAD=YES``, ``PART-HOLD-BACK`` = 3 part targets,
  ``HOLD-BACK`` = 3 target durations and ``CAN-SKIP-UNTIL`` = 6 target durations.
- ``EXT-X-RENDITION-REPORT`` for every other rendition (set by the session).
- A delta update (``_HLS_skip=YES``) replaces the segments older than ``CAN-SKIP-UNTIL`` with
  ``EXT-X-SKIP:SKIPPED-SEGMENTS``.

Each form is rendered once per change (``Rendered``: bytes and a strong ETag).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from stagecast.live.playlists import (
    MediaPlaylist,
    Rendered,
    SegmentEntry,
    _Listed,
    _segment_text,
)

# A Playlist with EXT-X-SKIP needs version 9 (draft 4.4.5.2); the LL forms share one version.
LL_VERSION = 9
ADVANCE_PART_LIMIT = 3  # draft 6.2.5.2: parts a blocking request may ask for past the last


@dataclass(frozen=True, slots=True)
class PartEntry:
    """One part as a playlist lists it: ``number`` (its file), ``duration`` in seconds."""

    number: int
    duration: float
    independent: bool

    @property
    def uri(self) -> str:
        """Return the part's file name (relative to its playlist)."""
        return part_uri(self.number)


def part_uri(number: int) -> str:
    """Return the file name of part ``number`` of a rendition."""
    return f"part-{number:08d}.m4s"


@dataclass(frozen=True, slots=True)
class RenditionReport:
    """Where another rendition of the ladder is: its playlist URI, last segment and part."""

    uri: str
    last_msn: int
    last_part: int | None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a live playlist is: its last whole segment, the parts listed, whether it ended.

    What a blocking reload waits for is decided here, for the playlist held by the node that
    owns the stream and for the copy other nodes mirror alike.
    """

    last_sequence: int  # -1 before the first segment
    last_parts: int | None  # parts listed for the last segment (None: not known)
    open_parts: int  # parts of the segment being made
    next_part: int  # the number of the next part (the preload hint's)
    ended: bool
    target_duration: int
    part_target: float | None

    @property
    def low_latency(self) -> bool:
        """Tell whether the playlist lists parts."""
        return self.part_target is not None

    def has(self, msn: int, part: int | None) -> bool:
        """Tell whether the playlist holds segment ``msn`` (or its part ``part``).

        A part index past the last part of a completed segment means the first part of the
        next one (draft 6.2.5.2). An ended playlist holds everything it ever will.
        """
        if self.ended:
            return True
        last = self.last_sequence
        if part is None:
            return msn <= last
        if msn <= last:
            if msn < last or self.last_parts is None or part < self.last_parts:
                return True
            return self.has(msn + 1, 0)
        return msn == last + 1 and part < self.open_parts

    def too_far(self, msn: int, part: int | None, parts_per_segment: int) -> bool:
        """Tell whether a blocking request asks too far ahead (answered 400, draft 6.2.5.2)."""
        last = self.last_sequence
        if msn > last + 2:
            return True
        if part is None:
            return False
        if msn == last + 1:
            ahead = part - (self.open_parts - 1)
        elif msn == last + 2:
            ahead = part + 1 + max(0, parts_per_segment - self.open_parts)
        else:
            return False
        return ahead > ADVANCE_PART_LIMIT


class LowLatencyPlaylist(MediaPlaylist):
    """A live media playlist with LL-HLS parts (see the module). ``part_target`` in seconds.

    Until ``part_target`` is set (``set_part_target``, once: a target that changes breaks
    players) the playlist renders as a standard one, without LL-HLS tags.
    """

    def __init__(
        self,
        *,
        part_target: float | None = None,
        window_segments: int = 6,
        dvr_seconds: float = 0.0,
        min_target_duration: int = 1,
        first_part: int = 0,
    ) -> None:
        super().__init__(
            window_segments=window_segments,
            dvr_seconds=dvr_seconds,
            min_target_duration=min_target_duration,
        )
        self.part_target: float | None = None
        if part_target is not None:
            self.set_part_target(part_target)
        self._parts: dict[int, tuple[PartEntry, ...]] = {}  # listed segment → its parts
        self._open: list[PartEntry] = []  # parts of the segment after the last listed one
        self._open_head = ""  # that segment's EXT-X-DISCONTINUITY and EXT-X-MAP, if any
        self._next_part = first_part  # part numbers name files: never reused in a session
        self._reports: tuple[RenditionReport, ...] = ()
        self._delta: Rendered | None = None

    # -- changes ----------------------------------------------------------------------------

    def set_part_target(self, part_target: float) -> None:
        """Fix the part target (seconds). Raises ValueError if it is bad or already set."""
        if not math.isfinite(part_target) or part_target <= 0:
            raise ValueError("part_target must be a positive number of seconds")
        if self.part_target is not None and self.part_target != part_target:
            raise ValueError("the part target is fixed for the session")
        self.part_target = part_target
        self._changed()

    @property
    def low_latency(self) -> bool:
        """Tell whether the playlist lists parts (its part target is set)."""
        return self.part_target is not None

    def add_part(self, part: PartEntry, *, map_uri: str, discontinuity: bool) -> None:
        """Add the next part of the segment being made. Raises ValueError out of order.

        ``map_uri`` and ``discontinuity`` are those of the segment the part belongs to (read
        with its first part: they go before its parts, as before its EXTINF).
        """
        if self.ended:
            raise ValueError("the playlist has ended")
        if part.number < self._next_part:
            raise ValueError(f"part {part.number} does not follow {self._next_part - 1}")
        if not self._open:
            last = self._last
            head = ["#EXT-X-DISCONTINUITY\n"] if discontinuity else []
            if last is None or last.map_uri != map_uri:
                head.append(f'#EXT-X-MAP:URI="{map_uri}"\n')
            self._open_head = "".join(head)
        self._open.append(part)
        self._next_part = part.number + 1
        self._changed()

    def append(self, entry: SegmentEntry) -> None:
        """List a whole segment; the open parts become its parts."""
        super().append(entry)
        self._parts[entry.sequence] = tuple(self._open)
        self._open = []
        first = self.media_sequence
        for sequence in [s for s in self._parts if s < first]:
            del self._parts[sequence]
        self._delta = None

    def drop_open_parts(self) -> None:
        """Forget the parts of a segment that will never be completed (its packager ended)."""
        if self._open:
            self._open = []
            self._changed()

    def set_reports(self, reports: Sequence[RenditionReport]) -> None:
        """Set the other renditions' reports (rendered again only if they changed)."""
        reports = tuple(reports)
        if reports != self._reports:
            self._reports = reports
            self._changed()

    def end(self) -> None:
        """Mark the stream finished (no preload hint from now on)."""
        super().end()
        self._delta = None

    def _changed(self) -> None:
        self._rendered = None
        self._delta = None

    # -- state ------------------------------------------------------------------------------

    @property
    def next_part(self) -> int:
        """Return the number of the next part (the one the preload hint names)."""
        return self._next_part

    @property
    def open_parts(self) -> int:
        """Return how many parts the segment being made has so far."""
        return len(self._open)

    def last_position(self) -> tuple[int, int | None]:
        """Return (last MSN, last part index) as a rendition report gives them.

        While a segment is being made that is its MSN and the index of its last part;
        otherwise the last whole segment and its last part (None without parts).
        """
        last = self.last_sequence
        if self._open:
            return (last + 1 if last is not None else 0), len(self._open) - 1
        if last is None:
            return 0, None
        parts = self._parts.get(last, ())
        return last, (len(parts) - 1 if parts else None)

    def position(self) -> Position:
        """Return where the playlist is (what blocking requests are answered by)."""
        last = self.last_sequence
        listed = self._parts.get(last) if last is not None else None
        return Position(
            last_sequence=last if last is not None else -1,
            last_parts=len(listed) if listed is not None else None,
            open_parts=len(self._open),
            next_part=self._next_part,
            ended=self.ended,
            target_duration=self.target_duration,
            part_target=self.part_target,
        )

    def has(self, msn: int, part: int | None) -> bool:
        """Tell whether the playlist holds segment ``msn`` (or its part ``part``)."""
        return self.position().has(msn, part)

    def too_far(self, msn: int, part: int | None, parts_per_segment: int) -> bool:
        """Tell whether a blocking request asks too far ahead (answered 400, draft 6.2.5.2)."""
        return self.position().too_far(msn, part, parts_per_segment)

    # -- rendering --------------------------------------------------------------------------

    @property
    def can_skip_until(self) -> float:
        """Return CAN-SKIP-UNTIL in seconds (six target durations)."""
        return 6.0 * self.target_duration

    def rendered_delta(self) -> Rendered:
        """Return the delta update (``EXT-X-SKIP``), rendered once per change."""
        if self.part_target is None:
            return self.rendered()
        if self._delta is None:
            self._delta = Rendered.of(self._render_ll(skip=True))
        return self._delta

    def standard_text(self) -> str:
        """Return the playlist without LL-HLS tags (the copy kept in storage)."""
        return super()._render()

    def _render(self) -> str:
        if self.part_target is None:
            return super()._render()
        return self._render_ll(skip=False)

    def _render_ll(self, *, skip: bool) -> str:
        window = list(self._window)
        skipped = self._skippable(window) if skip else 0
        lines = [self._ll_header(skipped)]
        edge = 3.0 * self.target_duration - sum(p.duration for p in self._open)
        with_parts = self._first_with_parts(window, edge)
        for index, listed in enumerate(window[skipped:], start=skipped):
            parts = self._parts.get(listed.entry.sequence, ()) if index >= with_parts else ()
            # The first segment shown always needs its EXT-X-MAP (4.3.2.5).
            text = _segment_text(listed.entry, with_map=True) if index == skipped else listed.text
            lines.append(_with_parts(text, parts))
        if self._open:
            lines.append(self._open_head + _parts_text(self._open))
        if self.ended:
            lines.append("#EXT-X-ENDLIST\n")
        else:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{part_uri(self._next_part)}"\n')
        lines.extend(_report_text(report) for report in self._reports)
        return "".join(lines)

    def _ll_header(self, skipped: int) -> str:
        target = self.target_duration
        assert self.part_target is not None
        control = (
            f"CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={self.can_skip_until:.1f},"
            f"PART-HOLD-BACK={3 * self.part_target:.3f},HOLD-BACK={3.0 * target:.1f}"
        )
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{LL_VERSION}",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-SERVER-CONTROL:{control}",
            f"#EXT-X-PART-INF:PART-TARGET={self.part_target:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
        ]
        if self._independent:
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        return "\n".join(lines) + "\n"

    def _skippable(self, window: list[_Listed]) -> int:
        """Count the leading segments that start more than CAN-SKIP-UNTIL before the end."""
        remaining = sum(listed.micros for listed in window) / 1_000_000
        remaining += sum(part.duration for part in self._open)
        skipped = 0
        for listed in window[:-1]:
            if remaining <= self.can_skip_until:
                break
            remaining -= listed.micros / 1_000_000
            skipped += 1
        return skipped

    @staticmethod
    def _first_with_parts(window: list[_Listed], edge: float) -> int:
        """Return the index of the first segment whose parts are still listed."""
        index = len(window)
        while index > 0 and edge > 0:
            index -= 1
            edge -= window[index].micros / 1_000_000
        return index


def _with_parts(text: str, parts: Sequence[PartEntry]) -> str:
    """Put a segment's EXT-X-PART lines after its other tags, before its EXTINF and URI."""
    if not parts:
        return text
    head, found, tail = text.partition("#EXTINF:")
    return head + _parts_text(parts) + found + tail


def _parts_text(parts: Sequence[PartEntry]) -> str:
    lines = []
    for part in parts:
        flag = ",INDEPENDENT=YES" if part.independent else ""
        lines.append(f'#EXT-X-PART:DURATION={part.duration:.5f},URI="{part.uri}"{flag}\n')
    return "".join(lines)


def _report_text(report: RenditionReport) -> str:
    attributes = f'URI="{report.uri}",LAST-MSN={report.last_msn}'
    if report.last_part is not None:
        attributes += f",LAST-PART={report.last_part}"
    return f"#EXT-X-RENDITION-REPORT:{attributes}\n"
