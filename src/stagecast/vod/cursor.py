"""Opaque, tamper-evident page cursors over the library's sort key ``(created_at, id)``.

A cursor (``stagecast.cursors``) is signed and bound to the filters it was made for: a forged,
truncated or re-used-with-other-filters cursor is a 400, never a 500. Times travel as whole
microseconds since the epoch, so the round trip is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stagecast import cursors

_PURPOSE = "vod-page"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
# datetime's own range, in microseconds from the epoch.
_MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICRO
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICRO


@dataclass(frozen=True)
class Position:
    """The sort key of the last row of a page: the next page starts strictly after it."""

    created_at: datetime
    id: int


def encode(secret: str, position: Position, scope: str) -> str:
    """Return the cursor of ``position`` for the filters named by ``scope``."""
    micros = (position.created_at - _EPOCH) // _MICRO
    return cursors.encode(secret, _PURPOSE, scope, (micros, position.id))


def decode(secret: str, token: str, scope: str) -> Position:
    """Return the position in ``token``. Raises a 400 unless we made it for ``scope``."""
    micros, vod_id = cursors.decode(secret, _PURPOSE, scope, token, 2)
    if type(micros) is not int or type(vod_id) is not int or not _MIN_US <= micros <= _MAX_US:
        raise cursors.BadCursor("cursor out of range")
    return Position(_EPOCH + micros * _MICRO, vod_id)
