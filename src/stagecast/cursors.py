"""Opaque keyset cursors for every paged list (chat history, moderation log, VODs, ...).

A cursor carries the sort key of the last row of a page, bound to one list (``purpose``) and
one scope (a channel, a webhook, a set of filters), and signed: a client can hand it back but
cannot forge, alter or move it to another list or scope. Anything else is a 400
(``BadSignature`` or ``BadCursor``), never a 500.
"""

from __future__ import annotations

from datetime import datetime

from stagecast.signing import BadSignature, sign, unsign

Key = tuple[int | str, ...]


class BadCursor(BadSignature):
    """A well-signed cursor that does not belong to this list or scope, or is malformed."""

    code = "bad_cursor"


Scope = int | str


def encode(secret: str, purpose: str, scope: Scope, key: Key) -> str:
    """Return the cursor that continues list ``purpose`` of ``scope`` after ``key``."""
    return sign(secret, purpose, {"c": scope, "k": list(key)})


def decode(secret: str, purpose: str, scope: Scope, cursor: str, arity: int) -> Key:
    """Return the key inside ``cursor``. Raises BadSignature or BadCursor (both 400)."""
    if not cursor.isascii():  # hmac.compare_digest refuses non-ASCII text with a TypeError
        raise BadCursor("malformed cursor")
    try:
        payload = unsign(secret, purpose, cursor)
    except BadSignature as exc:
        raise BadCursor(f"invalid cursor ({exc.message})") from exc
    if not isinstance(payload, dict) or payload.get("c") != scope:
        raise BadCursor("cursor belongs to another list")
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


def after_id(secret: str, purpose: str, scope: Scope, cursor: str | None) -> int | None:
    """Return the id a one-key cursor continues after (None for the first page). Raises 400."""
    if cursor is None:
        return None
    return int_key(decode(secret, purpose, scope, cursor, 1)[0])


def next_by_id(secret: str, purpose: str, scope: Scope, last_id: int | None) -> str | None:
    """Return the cursor of the page after the row ``last_id`` (None when there is no more)."""
    return None if last_id is None else encode(secret, purpose, scope, (last_id,))
