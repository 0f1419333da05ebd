"""Opaque, tamper-evident page cursors over the library's sort key ``(created_at, id)``.

A cursor is signed (``stagecast.signing``) and bound to the filters it was made for: a forged,
truncated or re-used-with-other-filters cursor is a 400 (``BadSignature``), never a 500.
Times travel as whole microseconds since the epoch, so the round trip is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stagecast.signing import BadSignature, sign, unsign

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
    return sign(secret, _PURPOSE, [micros, position.id, scope])


def decode(secret: str, token: str, scope: str) -> Position:
    """Return the position in ``token``. Raises BadSignature unless we made it for ``scope``."""
    if not token.isascii():  # ours are base64url; hmac.compare_digest refuses non-ASCII text
        raise BadSignature("malformed cursor")
    payload = unsign(secret, _PURPOSE, token)
    if (
        not isinstance(payload, list)
        or len(payload) != 3
        or not all(type(v) is int for v in payload[:2])
        or payload[2] != scope
    ):
        raise BadSignature("cursor does not belong to this listing")
    micros, vod_id = payload[0], payload[1]
    if not _MIN_US <= micros <= _MAX_US:
        raise BadSignature("cursor out of range")
    return Position(_EPOCH + micros * _MICRO, vod_id)
