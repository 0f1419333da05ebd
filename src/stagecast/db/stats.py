"""Counters of the database layer, kept in one place and exported on ``/metrics``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DbStats:
    """Monotonic counters, per operation kind where it matters.

    ``attempts`` counts every try, ``retries`` the tries after the first, ``timeouts`` attempts
    that hit their timeout, ``deadline_stops`` operations stopped by their total deadline,
    ``slow`` attempts slower than the slow-query threshold, ``outcome_unknown`` writes not
    retried because their result was lost, ``failures`` operations that ended in an error.
    """

    attempts: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    timeouts: Counter[str] = field(default_factory=Counter)
    deadline_stops: Counter[str] = field(default_factory=Counter)
    slow: Counter[str] = field(default_factory=Counter)
    outcome_unknown: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Return a plain copy of every counter, keyed by counter then kind."""
        return {
            name: dict(getattr(self, name))
            for name in (
                "attempts",
                "retries",
                "timeouts",
                "deadline_stops",
                "slow",
                "outcome_unknown",
                "failures",
            )
        }
