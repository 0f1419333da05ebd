"""Capped exponential backoff with full jitter: the one rule every retry loop follows.

After the n-th consecutive failure (n = 1, 2, ...) a caller waits a delay drawn uniformly from
``[0, min(cap, first * 2 ** (n - 1))]`` seconds. The whole window is jittered ("full jitter"), so
the retries of many processes that failed together spread out instead of arriving together.

A loop that is driven by a tick and whose failed attempt costs that tick (a publish that waits
for its timeout) may set a ``floor``: its delays are drawn from ``[floor, ceiling]`` instead, so
it never retries sooner than it would on its next tick anyway, however fast its ticks come.

``delay`` is the rule as a pure function, for callers that count attempts themselves (the
database layer, job queues that store the attempt number). ``Backoff`` counts consecutive
failures for one loop and keeps the monotonic time before which it must not try again, so a loop
that runs on its own clock (a 1 Hz tick) skips work instead of busy looping or sleeping.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

# 2.0 ** 1024 overflows a float; past this exponent every ceiling is the cap anyway.
_MAX_EXPONENT = 1023


def ceiling(failures: int, first: float, cap: float) -> float:
    """Return the largest delay after ``failures`` consecutive failures (seconds).

    That is ``min(cap, first * 2 ** (failures - 1))``; ``failures`` below 1 counts as 1.
    """
    exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
    return min(cap, first * 2.0**exponent)


def delay(
    failures: int,
    first: float,
    cap: float,
    rng: random.Random | None = None,
    *,
    floor: float = 0.0,
) -> float:
    """Return a delay drawn uniformly from ``[0, ceiling(failures, first, cap)]`` (seconds).

    With a ``floor``, the window starts there instead (never above the ceiling).
    """
    top = ceiling(failures, first, cap)
    return (rng or random).uniform(min(max(floor, 0.0), top), top)


class Backoff:
    """The backoff state of one retry loop: consecutive failures and when to try again.

    ``first`` is the ceiling of the first delay, ``cap`` the largest and ``floor`` the least
    (see the module), all in seconds; times come from ``clock`` (monotonic seconds). A new or
    reset ``Backoff`` is ready at once.
    """

    def __init__(
        self,
        first: float,
        cap: float,
        *,
        floor: float = 0.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (first > 0 and cap > 0):
            raise ValueError(f"backoff needs first > 0 and cap > 0, got {first} and {cap}")
        self.first = first
        self.cap = cap
        self.floor = floor
        self.failures = 0
        self.retry_at = -math.inf
        self._rng = rng
        self._clock = clock

    @property
    def failing(self) -> bool:
        """Tell whether the last attempt failed (no ``reset`` since)."""
        return self.failures > 0

    def next_delay(self) -> float:
        """Count one more failure and return the delay to wait before the next try."""
        self.failures += 1
        return delay(self.failures, self.first, self.cap, self._rng, floor=self.floor)

    def fail(self, started: float | None = None) -> float:
        """Count a failure and set ``retry_at``; return the delay drawn.

        The delay runs from ``started`` (the ``clock`` time the failed attempt began) when
        given, so time spent failing counts towards the wait; otherwise from now.
        """
        wait = self.next_delay()
        self.retry_at = (self._clock() if started is None else started) + wait
        return wait

    def ready(self) -> bool:
        """Tell whether ``retry_at`` has passed, i.e. the loop may try now."""
        return self._clock() >= self.retry_at

    def remaining(self) -> float:
        """Return the seconds left until ``retry_at`` (0 when ready)."""
        return max(0.0, self.retry_at - self._clock())

    def reset(self) -> bool:
        """Forget the failures after a success; return whether there were any."""
        was_failing = self.failing
        self.failures = 0
        self.retry_at = -math.inf
        return was_failing
