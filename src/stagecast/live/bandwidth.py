"""Measure a rendition's bit rate from its segments, for the master playlist's BANDWIDTH.

O(1) time and memory per segment. Rates are bits per second, sizes bytes, durations seconds.
"""

from __future__ import annotations

import math


class BandwidthStats:
    """Peak and average bit rate of the segments added so far.

    ``peak`` is the largest bit rate of one segment (RFC 8216 4.3.4.2 BANDWIDTH is the peak
    segment bit rate); ``average`` is all bits over all seconds (AVERAGE-BANDWIDTH). Both are
    rounded up so the playlist never understates what a client must sustain.

    RFC 8216 measures the peak over runs of segments lasting 0.5-1.5 target durations, so a
    lone short segment (the last one before a reconnect, say) does not count alone: with
    ``min_peak_duration`` (seconds; pass half the target duration) short segments are merged
    with the ones after them until the run is long enough. With the default 0 every segment
    counts alone.
    """

    def __init__(self, *, min_peak_duration: float = 0.0) -> None:
        if not math.isfinite(min_peak_duration) or min_peak_duration < 0:
            raise ValueError("min_peak_duration must be a finite number of seconds >= 0")
        self._min_peak_duration = min_peak_duration
        self._count = 0
        self._bytes = 0
        self._seconds = 0.0
        self._peak = 0.0
        self._run_bytes = 0
        self._run_seconds = 0.0

    def add(self, byte_size: int, duration: float) -> None:
        """Count one segment of ``byte_size`` bytes lasting ``duration`` seconds.

        Raises ValueError for a negative size or a duration that is not finite and positive.
        """
        if byte_size < 0:
            raise ValueError("byte_size must be >= 0")
        if not math.isfinite(duration) or duration <= 0:
            raise ValueError("duration must be a finite number of seconds > 0")
        self._count += 1
        self._bytes += byte_size
        self._seconds += duration
        self._run_bytes += byte_size
        self._run_seconds += duration
        if self._run_seconds >= self._min_peak_duration:
            self._peak = max(self._peak, self._run_bytes * 8 / self._run_seconds)
            self._run_bytes, self._run_seconds = 0, 0.0

    @property
    def count(self) -> int:
        """Return how many segments were added."""
        return self._count

    @property
    def peak(self) -> int:
        """Return the peak segment bit rate in bits per second (0 before any segment)."""
        peak = self._peak
        if peak == 0 and self._run_seconds > 0:
            # Only short segments so far: their run is the best measure there is.
            peak = self._run_bytes * 8 / self._run_seconds
        return math.ceil(peak)

    @property
    def average(self) -> int:
        """Return the average bit rate in bits per second (0 before any segment)."""
        return math.ceil(self._bytes * 8 / self._seconds) if self._seconds else 0
