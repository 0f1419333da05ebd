"""Write HLS playlists (RFC 8216): live media playlists kept in memory, VOD and master ones.

A live ``MediaPlaylist`` is appended to once per segment and renders from text prepared at
append time, so the work per segment is O(1) amortized; the rendering (text, bytes and a
strong ETag, see ``Rendered``) is made once per change and a request costs nothing more;
nothing is rebuilt from the database. Durations are seconds,
bandwidths bits per second, sizes bytes. Section numbers below are RFC 8216's.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

# 4.3.2.5: EXT-X-MAP in a playlist that is not I-frames-only needs version 6 or later.
MIN_VERSION = 6


@dataclass(frozen=True)
class SegmentEntry:
    """One media segment as a playlist lists it.

    ``sequence`` is the server-assigned media sequence number, ``duration`` seconds,
    ``program_date_time`` an aware datetime (rendered in UTC), ``map_uri`` the init segment it
    needs, ``byte_size`` bytes. Raises ValueError for values a playlist cannot carry.
    """

    sequence: int
    duration: float
    uri: str
    program_date_time: datetime
    discontinuity: bool
    map_uri: str
    byte_size: int

    def __post_init__(self) -> None:
        if self.sequence < 0:
            raise ValueError("sequence must be >= 0")
        if not math.isfinite(self.duration) or self.duration <= 0:
            raise ValueError("duration must be a finite number of seconds > 0")
        if self.byte_size < 0:
            raise ValueError("byte_size must be >= 0")
        if self.program_date_time.utcoffset() is None:
            raise ValueError("program_date_time must be timezone-aware")
        _check_uri(self.uri, "uri")
        _check_uri(self.map_uri, "map_uri", quoted=True)


@dataclass(frozen=True)
class Variant:
    """One variant stream of a master playlist (4.3.4.2).

    ``bandwidth`` is the peak and ``average_bandwidth`` the average bit rate (bits per
    second), ``codecs`` an RFC 6381 list, ``resolution`` (width, height) in pixels,
    ``frame_rate`` frames per second. ``name`` identifies the rendition to the server (it
    breaks bandwidth ties); EXT-X-STREAM-INF has no NAME attribute, so it is not rendered.
    """

    uri: str
    bandwidth: int
    average_bandwidth: int | None
    codecs: str
    resolution: tuple[int, int] | None
    frame_rate: float | None
    name: str

    def __post_init__(self) -> None:
        _check_uri(self.uri, "uri")
        if self.bandwidth < 0 or (
            self.average_bandwidth is not None and self.average_bandwidth < 0
        ):
            raise ValueError("bandwidths must be >= 0")
        if not self.codecs or any(c in self.codecs for c in '"\r\n'):
            raise ValueError("codecs must be a non-empty quoted-string value")
        if self.resolution is not None and min(self.resolution) <= 0:
            raise ValueError("resolution must be positive")
        if self.frame_rate is not None and not (
            math.isfinite(self.frame_rate) and self.frame_rate > 0
        ):
            raise ValueError("frame_rate must be a finite number > 0")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A playlist rendered once: its text, the bytes served and their strong ETag.

    The ETag (RFC 9110 8.8.3) is a quoted hash of the bytes, so the same playlist has the
    same ETag in every process and any change gives a new one.
    """

    text: str
    body: bytes
    etag: str

    @classmethod
    def of(cls, text: str) -> Rendered:
        """Render ``text`` to bytes and hash them (once per change, not per request)."""
        body = text.encode()
        return cls(text, body, f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"')


def _check_uri(value: str, what: str, *, quoted: bool = False) -> None:
    # A URI is a line of its own (4.1): a newline would inject tags, a leading '#' would turn
    # it into a comment, and a quoted-string (4.2) cannot hold '"'.
    forbidden = '\r\n"' if quoted else "\r\n"
    if not value or value != value.strip() or value.startswith("#"):
        raise ValueError(f"{what} must be a non-empty URI without surrounding blanks or '#'")
    if any(c in value for c in forbidden):
        raise ValueError(f"{what} must not contain {forbidden!r}")


def _extinf(duration: float) -> str:
    return f"{duration:.3f}"


def rounded_duration(duration: float) -> int:
    """Return ``duration`` (seconds) as a client rounds its EXTINF: to the nearest integer.

    4.3.3.1: each EXTINF, rounded to the nearest integer, MUST be <= EXT-X-TARGETDURATION.
    The rendered (3-decimal) value is rounded, half up, since that is what clients read.
    """
    return int(Decimal(_extinf(duration)).to_integral_value(rounding=ROUND_HALF_UP))


def _program_date_time(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _segment_text(entry: SegmentEntry, *, with_map: bool) -> str:
    lines = ["#EXT-X-DISCONTINUITY"] if entry.discontinuity else []
    if with_map:
        lines.append(f'#EXT-X-MAP:URI="{entry.map_uri}"')
    lines += [
        f"#EXT-X-PROGRAM-DATE-TIME:{_program_date_time(entry.program_date_time)}",
        f"#EXTINF:{_extinf(entry.duration)},",
        entry.uri,
    ]
    return "\n".join(lines) + "\n"


def _header(
    *,
    version: int,
    target_duration: int,
    media_sequence: int,
    discontinuity_sequence: int | None,
    vod: bool,
    independent_segments: bool,
) -> str:
    lines = [
        "#EXTM3U",  # 4.3.1.1: the first line
        f"#EXT-X-VERSION:{version}",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence is not None:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if vod:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    if independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    return "\n".join(lines) + "\n"


def _check_version(version: int) -> None:
    if version < MIN_VERSION:
        raise ValueError(f"fMP4 playlists with EXT-X-MAP need version >= {MIN_VERSION}")


@dataclass(frozen=True, slots=True)
class _Listed:
    entry: SegmentEntry
    text: str  # the segment's lines, with EXT-X-MAP when its init differs from the previous
    micros: int  # duration in microseconds, so window sums never drift


class MediaPlaylist:
    """A live media playlist: a sliding window over the segments appended so far.

    The window keeps the last ``window_segments`` segments; with ``dvr_seconds`` > 0 it keeps
    instead every segment whose end lies within the last ``dvr_seconds`` seconds of media
    (never fewer than ``window_segments``). Either way no segment leaves while the rest would
    last less than three target durations (6.2.2). EXT-X-TARGETDURATION is the largest rounded
    duration ever appended, at least ``min_target_duration``: it never decreases, and 6.2.1
    wants it constant, so pass the configured segment length rounded up to start there.
    """

    def __init__(
        self,
        *,
        window_segments: int = 6,
        dvr_seconds: float = 0.0,
        version: int = 7,
        independent_segments: bool = True,
        min_target_duration: int = 1,
    ) -> None:
        if window_segments < 1:
            raise ValueError("window_segments must be >= 1")
        if not math.isfinite(dvr_seconds) or dvr_seconds < 0:
            raise ValueError("dvr_seconds must be a finite number of seconds >= 0")
        if min_target_duration < 1:
            raise ValueError("min_target_duration must be >= 1")
        _check_version(version)
        self._window_segments = window_segments
        self._dvr_micros = round(dvr_seconds * 1_000_000)
        self._version = version
        self._independent = independent_segments
        self._target = min_target_duration
        self._window: deque[_Listed] = deque()
        self._window_micros = 0
        self._discontinuity_sequence = 0
        self._last: SegmentEntry | None = None
        self._ended = False
        self._rendered: Rendered | None = None

    def append(self, entry: SegmentEntry) -> None:
        """Add the next segment and slide the window.

        Raises ValueError after ``end()`` or unless ``entry.sequence`` exceeds the previous
        one. Sequences should also be consecutive: clients number segments by position from
        EXT-X-MEDIA-SEQUENCE (6.2.1), so after a gap they are numbered differently once the
        segments before it leave. A gap is tolerated rather than refused so one lost segment
        cannot stop the playlist for good.
        """
        if self._ended:
            raise ValueError("the playlist has ended")
        last = self._last
        if last is not None and entry.sequence <= last.sequence:
            raise ValueError(f"sequence {entry.sequence} does not follow {last.sequence}")
        with_map = last is None or entry.map_uri != last.map_uri
        micros = round(entry.duration * 1_000_000)
        self._window.append(_Listed(entry, _segment_text(entry, with_map=with_map), micros))
        self._window_micros += micros
        self._target = max(self._target, rounded_duration(entry.duration))
        self._last = entry
        self._slide()
        self._rendered = None

    def _slide(self) -> None:
        floor_micros = 3 * self._target * 1_000_000
        while len(self._window) > self._window_segments:
            rest = self._window_micros - self._window[0].micros
            if self._dvr_micros and rest <= self._dvr_micros:
                break  # the head ends within the DVR window
            if rest < floor_micros:
                break  # 6.2.2: keep at least three target durations listed
            head = self._window.popleft()
            self._window_micros = rest
            if head.entry.discontinuity:
                # 6.2.2: count every EXT-X-DISCONTINUITY that leaves, so the discontinuity
                # sequence numbers of the segments still listed do not change.
                self._discontinuity_sequence += 1

    def end(self) -> None:
        """Mark the stream finished: EXT-X-ENDLIST from now on; later appends are refused."""
        if not self._ended:
            self._ended = True
            self._rendered = None

    def render(self) -> str:
        """Return the playlist text (cached until the next ``append`` or ``end``)."""
        return self.rendered().text

    def rendered(self) -> Rendered:
        """Return the playlist as served: text, bytes, ETag (cached until the next change)."""
        if self._rendered is None:
            self._rendered = Rendered.of(self._render())
        return self._rendered

    def _render(self) -> str:
        parts = [
            _header(
                version=self._version,
                target_duration=self._target,
                media_sequence=self.media_sequence,
                discontinuity_sequence=self._discontinuity_sequence,
                vod=False,
                independent_segments=self._independent,
            )
        ]
        if self._window:
            # 4.3.2.5: the first listed segment always needs its EXT-X-MAP.
            parts.append(_segment_text(self._window[0].entry, with_map=True))
            parts.extend(listed.text for listed in itertools.islice(self._window, 1, None))
        if self._ended:
            parts.append("#EXT-X-ENDLIST\n")
        return "".join(parts)

    @property
    def media_sequence(self) -> int:
        """Return the sequence of the first listed segment (0 while empty)."""
        return self._window[0].entry.sequence if self._window else 0

    @property
    def discontinuity_sequence(self) -> int:
        """Return how many discontinuities have left the window."""
        return self._discontinuity_sequence

    @property
    def target_duration(self) -> int:
        """Return EXT-X-TARGETDURATION in whole seconds."""
        return self._target

    @property
    def segments(self) -> tuple[SegmentEntry, ...]:
        """Return the listed segments, oldest first."""
        return tuple(listed.entry for listed in self._window)

    @property
    def last_sequence(self) -> int | None:
        """Return the sequence of the last segment appended, or None before the first."""
        return self._last.sequence if self._last is not None else None

    @property
    def ended(self) -> bool:
        """Say whether ``end()`` was called."""
        return self._ended


def render_vod(
    entries: Sequence[SegmentEntry], *, version: int = 7, independent_segments: bool = True
) -> str:
    """Render a VOD playlist (EXT-X-PLAYLIST-TYPE:VOD, EXT-X-ENDLIST) listing every entry.

    Discontinuities are kept and EXT-X-MAP is repeated wherever the init segment changes.
    Raises ValueError for no entries or sequences that do not strictly increase (gaps are
    allowed: a VOD has no reloads whose media sequence numbers must line up).
    """
    if not entries:
        raise ValueError("a VOD playlist needs at least one segment")
    _check_version(version)
    for before, after in itertools.pairwise(entries):
        if after.sequence <= before.sequence:
            raise ValueError("segment sequences must strictly increase")
    header = _header(
        version=version,
        target_duration=max(max(rounded_duration(e.duration) for e in entries), 1),
        media_sequence=entries[0].sequence,
        discontinuity_sequence=None,
        vod=True,
        independent_segments=independent_segments,
    )
    return "".join([header, *_vod_segments(entries), "#EXT-X-ENDLIST\n"])


def _vod_segments(entries: Sequence[SegmentEntry]) -> Iterable[str]:
    previous_map: str | None = None
    for entry in entries:
        yield _segment_text(entry, with_map=entry.map_uri != previous_map)
        previous_map = entry.map_uri


def render_master(variants: Sequence[Variant], *, independent_segments: bool = True) -> str:
    """Render a master playlist, variants by peak bandwidth, highest first (4.3.4.2).

    Raises ValueError for an empty list.
    """
    if not variants:
        raise ValueError("a master playlist needs at least one variant")
    lines = ["#EXTM3U"]
    if independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")  # 4.3.5.1
    for variant in sorted(variants, key=lambda v: (-v.bandwidth, v.name)):
        lines += [f"#EXT-X-STREAM-INF:{_stream_inf(variant)}", variant.uri]
    return "\n".join(lines) + "\n"


def _stream_inf(variant: Variant) -> str:
    attributes = [f"BANDWIDTH={variant.bandwidth}"]
    if variant.average_bandwidth is not None:
        attributes.append(f"AVERAGE-BANDWIDTH={variant.average_bandwidth}")
    attributes.append(f'CODECS="{variant.codecs}"')
    if variant.resolution is not None:
        attributes.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
    if variant.frame_rate is not None:
        attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
    return ",".join(attributes)
