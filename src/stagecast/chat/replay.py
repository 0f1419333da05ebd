"""Chat replay: a broadcast's chat in the order it was seen, for the player of its VOD.

Every message stores the live session it was sent during and its ``media_time`` (seconds
since that session started, which is where the recording starts). A replay page is the
visible messages of one session with ``media_time >= start``, ordered by ``(media_time, seq)``
and keyset-paged on that pair: one range read of ``ix_chat_message_replay`` (partial on
``deleted_at IS NULL AND session_id IS NOT NULL``, columns ``session_id, media_time, seq``)
of ``limit + 1`` rows, at any offset. Messages a moderator deleted are not in that index;
held messages live in ``chat_held`` until approved, so neither is ever served.

Who may read it is the caller's business (the VOD's visibility, decided by the VOD's own
policy); this module adds the chat's rule on top: a channel or an instance that closed its
chat to anonymous readers closes its replay to them too (``require_reader``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Integer, Select, bindparam, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast import cursors
from stagecast.auth.models import account
from stagecast.auth.service import Account
from stagecast.chat.messages import Message
from stagecast.chat.models import chat_message
from stagecast.chat.runtime import Chat
from stagecast.db import Database, Kind
from stagecast.db.schema import IdType, Record
from stagecast.errors import BadRequest, Unauthorized

PURPOSE = "chat.replay"
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{0,9})?|\.[0-9]{1,9}")
_COUNT = re.compile(r"[0-9]{1,6}")

_COLUMNS = (
    chat_message.c.seq,
    account.c.username,
    chat_message.c.body,
    chat_message.c.sent_at,
    chat_message.c.media_time,
)


@dataclass(frozen=True)
class ReplayPage:
    """Messages in media-time order, and the cursor of the next page (None: no more)."""

    items: list[Message]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        """Tell whether a next page exists."""
        return self.next_cursor is not None


def parse_start(raw: str | None) -> float:
    """Return ``from`` in seconds (0 when absent). Raises BadRequest unless it is a plain
    non-negative decimal number (no sign, exponent, ``inf`` or ``nan``)."""
    if raw is None:
        return 0.0
    if not _SECONDS.fullmatch(raw):
        raise BadRequest("from must be a number of seconds, 0 or more (e.g. 90 or 12.5)")
    return float(raw)


def parse_limit(raw: str | None) -> int:
    """Return the page size (``DEFAULT_LIMIT`` when absent). Raises BadRequest outside
    1..``MAX_LIMIT``."""
    if raw is None:
        return DEFAULT_LIMIT
    if not _COUNT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def encode_cursor(secret: str, scope: cursors.Scope, last: Message) -> str:
    """Return the cursor of the page after ``last`` (the media time travels exactly, as its
    shortest round-tripping decimal)."""
    assert last.media_time is not None  # every replayed message has one
    return cursors.encode(secret, PURPOSE, scope, (repr(last.media_time), last.id))


def decode_cursor(secret: str, scope: cursors.Scope, token: str) -> tuple[float, int]:
    """Return the ``(media_time, seq)`` a cursor continues after. Raises BadRequest (400)."""
    raw_time, seq = cursors.decode(secret, PURPOSE, scope, token, 2)
    if not isinstance(raw_time, str):
        raise cursors.BadCursor("malformed cursor")
    try:
        media_time = float(raw_time)
    except ValueError as exc:
        raise cursors.BadCursor("malformed cursor") from exc
    if not math.isfinite(media_time):
        raise cursors.BadCursor("malformed cursor")
    return media_time, cursors.int_key(seq)


@functools.cache
def page_statement(after: bool) -> Select[Any]:
    """Return the page query, with bound ``session_id``, ``start``, ``limit`` and, with
    ``after``, the cursor's ``after_time`` and ``after_seq`` (built once per shape)."""
    query = (
        select(*_COLUMNS)
        .join(account, account.c.id == chat_message.c.author_id)
        .where(
            chat_message.c.session_id == bindparam("session_id", type_=IdType),
            chat_message.c.deleted_at.is_(None),
            chat_message.c.media_time >= bindparam("start", type_=Float()),
        )
    )
    if after:
        start = tuple_(bindparam("after_time", type_=Float()), bindparam("after_seq", type_=IdType))
        query = query.where(tuple_(chat_message.c.media_time, chat_message.c.seq) > start)
    return query.order_by(chat_message.c.media_time, chat_message.c.seq).limit(
        bindparam("limit", type_=Integer())
    )


def page_params(
    session_id: int, start: float, limit: int, after: tuple[float, int] | None
) -> dict[str, Any]:
    """Return the parameters of ``page_statement(after is not None)`` (``limit + 1`` rows)."""
    params: dict[str, Any] = {"session_id": session_id, "start": start, "limit": limit + 1}
    if after is not None:
        params.update(after_time=after[0], after_seq=after[1])
    return params


def _message(row: Record) -> Message:
    return Message(row[0], row[1], row[2], row[3], media_time=float(row[4]))


async def page(
    db: Database,
    secret: str,
    *,
    scope: cursors.Scope,
    session_id: int,
    start: float,
    limit: int,
    cursor: str | None = None,
) -> ReplayPage:
    """Return the visible messages of session ``session_id`` from ``start`` seconds on, in
    ``(media_time, id)`` order, ``limit`` of them, after ``cursor`` (bound to ``scope``).

    One read of ``limit + 1`` index rows, whatever the offset. Raises BadRequest for a cursor
    that is not one of this list's, and the errors of ``Database.run``.
    """
    after = decode_cursor(secret, scope, cursor) if cursor is not None else None
    statement = page_statement(after is not None)
    params = page_params(session_id, start, limit, after)

    async def unit(conn: AsyncConnection) -> list[Message]:
        return [_message(row) for row in await conn.execute(statement, params)]

    found = await db.run(unit, kind=Kind.READ, name="chat_replay")
    items = found[:limit]
    more = len(found) > limit
    return ReplayPage(items, encode_cursor(secret, scope, items[-1]) if more else None)


Identify = Callable[[], Awaitable[Account | None]]


async def require_reader(chat: Chat, channel_id: int, identify: Identify) -> None:
    """Raise Unauthorized for an anonymous caller when the instance or the channel keeps its
    chat from anonymous readers; ``identify`` is only awaited then."""
    rules = await chat.rules.channel(channel_id)
    if chat.settings.chat_anonymous_read and rules.anonymous_read:
        return
    if await identify() is None:
        raise Unauthorized("sign in to read this chat")
