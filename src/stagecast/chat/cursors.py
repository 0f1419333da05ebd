"""Opaque keyset cursors for chat lists (history, moderation log, restrictions, review queue).

A cursor carries the sort key of the last row of a page, bound to one channel and one list, and
signed: a client can hand it back but cannot forge, alter or move it to another channel or list.
Anything else is a 400 (``BadSignature`` or ``BadCursor``).
"""

from __future__ import annotations

from datetime import datetime

from stagecast.errors import BadRequest
from stagecast.signing import sign, unsign

Key = tuple[int | str, ...]


class BadCursor(BadRequest):
    """A well-signed cursor that does not belong to this list or channel, or is malformed."""

    code = "bad_cursor"


def encode(secret: str, list_name: str, channel_id: int, key: Key) -> str:
    """Return the cursor that continues ``list_name`` of ``channel_id`` after ``key``."""
    return sign(secret, f"chat.{list_name}", {"c": channel_id, "k": list(key)})


def decode(secret: str, list_name: str, channel_id: int, cursor: str, arity: int) -> Key:
    """Return the key inside ``cursor``. Raises BadSignature or BadCursor (both 400)."""
    if not cursor.isascii():  # hmac.compare_digest refuses non-ASCII text with a TypeError
        raise BadCursor("malformed cursor")
    payload = unsign(secret, f"chat.{list_name}", cursor)
    if not isinstance(payload, dict) or payload.get("c") != channel_id:
        raise BadCursor("cursor belongs to another channel")
    key = payload.get("k")
    if (
        not isinstance(key, list)
        or len(key) != arity
        or not all(isinstance(v, int | str) and not isinstance(v, bool) for v in key)
    ):
        raise BadCursor("malformed cursor")
    return tuple(key)


def time_key(moment: datetime) -> str:
    """Return ``moment`` as a sortable cursor component (ISO 8601, UTC)."""
    return moment.isoformat()


def parse_time_key(value: int | str) -> datetime:
    """Return the datetime of a cursor component made by ``time_key``. Raises BadCursor."""
    if not isinstance(value, str):
        raise BadCursor("malformed cursor")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadCursor("malformed cursor") from exc
    if moment.tzinfo is None:
        raise BadCursor("malformed cursor")
    return moment


def int_key(value: int | str) -> int:
    """Return an integer cursor component. Raises BadCursor."""
    if not isinstance(value, int) or value < 0:
        raise BadCursor("malformed cursor")
    return value
