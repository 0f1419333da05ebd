"""Chat messages in the database: validate, store (taking the next per-channel id), read pages,
read ranges for resume and gap-fill, soft-delete.

Each function is one transaction through ``Database.run``. A post with a nonce is an idempotent
write (the unique (channel, author, nonce) makes a replay return the stored message); without
one it is a plain write and is never retried blindly.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth.models import account
from stagecast.chat.models import chat_channel, chat_message
from stagecast.db import Database, Kind
from stagecast.db.schema import Record, utcnow
from stagecast.db.upsert import insert_or_update
from stagecast.errors import Unprocessable

NONCE_MAX = 64
_NONCE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
# Bidirectional embeddings, overrides and isolates: invisible, and used to spoof text direction.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ZWJ = "\u200d"
_VS16 = "\ufe0f"  # emoji presentation selector, part of many emoji sequences
_BLACK_FLAG = "\U0001f3f4"  # a subdivision flag is this, tag characters, then a cancel tag
_TAGS = ("\U000e0020", "\U000e007f")


@dataclass(frozen=True)
class Message:
    """A stored chat message; ``id`` is its per-channel sequence number."""

    id: int
    author: str
    body: str
    sent_at: datetime
    nonce: str | None = None
    session_id: int | None = None
    media_time: float | None = None


@dataclass(frozen=True)
class OnAirMark:
    """The live session a message was sent during, and its media time (seconds)."""

    session_id: int
    media_time: float


def clean_body(body: object, max_length: int) -> str:
    """Return ``body`` trimmed, format characters removed (``strip_format``). Raises
    Unprocessable unless 1..max_length code points of text remain.

    Control characters, lone surrogates and bidirectional embeddings, overrides and isolates
    are refused; the text is otherwise stored raw (it is escaped on output, never here).
    """
    if not isinstance(body, str):
        raise Unprocessable("body must be a string")
    text = strip_format(body).strip()
    if not text:
        raise Unprocessable("message is empty")
    if len(text) > max_length:
        raise Unprocessable(f"message is longer than {max_length} characters")
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS:
            raise Unprocessable("message contains control characters")
    return text


def strip_format(text: str) -> str:
    """Return ``text`` without its invisible format characters (Unicode category Cf).

    Zero-width spaces and joiners, soft hyphens, word joiners, direction marks and the like
    change nothing a reader sees, but split a word for a filter or make two names look equal.
    Kept: the zero-width joiner inside an emoji sequence and the tags of a subdivision flag,
    which make one glyph of several; and the bidirectional controls, which ``clean_body``
    refuses. Filters match the text with every Cf removed (``filters.normalise``).
    """
    if text.isascii():
        return text
    kept: list[str] = []
    for at, char in enumerate(text):
        visible = unicodedata.category(char) != "Cf" or char in _BIDI_CONTROLS
        if visible or (kept and _joins(char, kept[-1], text[at + 1 : at + 2])):
            kept.append(char)
    return "".join(kept)


def _joins(char: str, before: str, after: str) -> bool:
    """Tell whether format character ``char`` between ``before`` and ``after`` (a character,
    or "" at the end) joins an emoji sequence or continues a subdivision flag."""
    if char == _ZWJ:
        return _emoji(before) and _emoji(after)
    if _TAGS[0] <= char <= _TAGS[1]:
        return before == _BLACK_FLAG or _TAGS[0] <= before <= _TAGS[1]
    return False


def _emoji(char: str) -> bool:
    """Tell whether ``char`` may stand on either side of a joiner in an emoji sequence."""
    return char == _VS16 or (char != "" and unicodedata.category(char) in ("So", "Sk"))


def clean_nonce(nonce: object) -> str | None:
    """Return ``nonce`` (1-64 of A-Z a-z 0-9 - _ . :) or None. Raises Unprocessable."""
    if nonce is None:
        return None
    if (
        not isinstance(nonce, str)
        or not 1 <= len(nonce) <= NONCE_MAX
        or not set(nonce) <= _NONCE_CHARS
    ):
        raise Unprocessable("nonce must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'")
    return nonce


_COLUMNS = (
    chat_message.c.seq,
    account.c.username,
    chat_message.c.body,
    chat_message.c.sent_at,
    chat_message.c.nonce,
    chat_message.c.session_id,
    chat_message.c.media_time,
)


def _message(row: Record) -> Message:
    return Message(*(row[i] for i in range(len(_COLUMNS))))


def _visible(channel_id: int) -> Any:
    """Select visible messages of a channel with their author (one join, no N+1)."""
    return (
        select(*_COLUMNS)
        .join(account, account.c.id == chat_message.c.author_id)
        .where(chat_message.c.channel_id == channel_id, chat_message.c.deleted_at.is_(None))
    )


@dataclass(frozen=True)
class Draft:
    """A message about to be stored (its id is taken when it is inserted)."""

    author_id: int
    author: str
    body: str
    nonce: str | None = None
    onair: OnAirMark | None = None
    sent_at: datetime = field(default_factory=utcnow)


def next_seq_statement(conn: AsyncConnection, channel_id: int, count: int = 1) -> Any:
    """Return the upsert that takes the channel's next ``count`` ids (creating its row) and
    returns the last of them."""
    row = {
        "channel_id": channel_id,
        "last_seq": count,
        "slow_mode_seconds": 0,
        "anonymous_read": True,
        "updated_at": utcnow(),
    }
    return insert_or_update(
        conn,
        chat_channel,
        row,
        on="pk_chat_channel",
        set_={"last_seq": chat_channel.c.last_seq + count},
    ).returning(chat_channel.c.last_seq)


async def insert_messages(
    conn: AsyncConnection, channel_id: int, drafts: list[Draft]
) -> list[Message]:
    """Take the channel's next ids and insert ``drafts`` in order, inside the caller's
    transaction: two statements whatever the number of drafts."""
    statement = next_seq_statement(conn, channel_id, len(drafts))
    last = int((await conn.execute(statement)).scalar_one())
    stored = [
        Message(
            last - len(drafts) + 1 + offset,
            draft.author,
            draft.body,
            draft.sent_at,
            draft.nonce,
            draft.onair.session_id if draft.onair else None,
            draft.onair.media_time if draft.onair else None,
        )
        for offset, draft in enumerate(drafts)
    ]
    await conn.execute(
        insert(chat_message),
        [
            {
                "channel_id": channel_id,
                "seq": message.id,
                "author_id": draft.author_id,
                "body": message.body,
                "nonce": message.nonce,
                "session_id": message.session_id,
                "media_time": message.media_time,
                "sent_at": message.sent_at,
            }
            for message, draft in zip(stored, drafts, strict=True)
        ],
    )
    return stored


async def _by_nonce(
    conn: AsyncConnection, channel_id: int, author_id: int, nonce: str
) -> Message | None:
    row = (
        await conn.execute(
            select(*_COLUMNS)
            .join(account, account.c.id == chat_message.c.author_id)
            .where(
                chat_message.c.channel_id == channel_id,
                chat_message.c.author_id == author_id,
                chat_message.c.nonce == nonce,
            )
        )
    ).one_or_none()
    return _message(row) if row is not None else None


async def store(db: Database, channel_id: int, draft: Draft) -> tuple[Message, bool]:
    """Persist one message; return it and whether it is new (False: a replayed nonce).

    A replayed nonce fails the insert on the unique (channel, author, nonce), which rolls the
    whole transaction back (its id included), and the stored message is read instead. Raises
    the errors of ``Database.run``. Posts normally go through ``MessageWriter``, which stores
    many at once; this is its fallback for a batch that hit a replayed nonce.
    """

    async def unit(conn: AsyncConnection) -> Message:
        return (await insert_messages(conn, channel_id, [draft]))[0]

    kind = Kind.IDEMPOTENT_WRITE if draft.nonce is not None else Kind.WRITE
    try:
        return await db.run(unit, kind=kind, name="chat_store"), True
    except IntegrityError:
        if draft.nonce is None:
            raise
        found = await _replayed(db, channel_id, draft.author_id, draft.nonce)
        if found is None:
            raise
        return found, False


async def _replayed(db: Database, channel_id: int, author_id: int, nonce: str) -> Message | None:
    async def unit(conn: AsyncConnection) -> Message | None:
        return await _by_nonce(conn, channel_id, author_id, nonce)

    return await db.run(unit, kind=Kind.READ, name="chat_by_nonce")


async def page(
    db: Database, channel_id: int, *, before: int | None, limit: int
) -> tuple[list[Message], bool]:
    """Return up to ``limit`` visible messages older than id ``before``, newest first, and
    whether there are more. Reads ``limit + 1`` rows of the partial index; no count."""

    async def unit(conn: AsyncConnection) -> list[Message]:
        rows = await conn.execute(page_statement(channel_id, before, limit))
        return [_message(r) for r in rows]

    found = await db.run(unit, kind=Kind.READ, name="chat_page")
    return found[:limit], len(found) > limit


def page_statement(channel_id: int, before: int | None, limit: int) -> Any:
    """Return the history page query (for EXPLAIN in tests and the benchmark)."""
    query = _visible(channel_id)
    if before is not None:
        query = query.where(chat_message.c.seq < before)
    return query.order_by(chat_message.c.seq.desc()).limit(limit + 1)


async def after(
    db: Database, channel_id: int, after_id: int, *, limit: int, upto: int | None = None
) -> list[Message]:
    """Return visible messages with ``after_id < id <= upto``, oldest first, at most ``limit``."""

    async def unit(conn: AsyncConnection) -> list[Message]:
        query = _visible(channel_id).where(chat_message.c.seq > after_id)
        if upto is not None:
            query = query.where(chat_message.c.seq <= upto)
        rows = await conn.execute(query.order_by(chat_message.c.seq).limit(limit))
        return [_message(r) for r in rows]

    return await db.run(unit, kind=Kind.READ, name="chat_after")


async def last_id(db: Database, channel_id: int) -> int:
    """Return the newest id handed out in the channel (0 before the first message)."""

    async def unit(conn: AsyncConnection) -> int:
        value = (
            await conn.execute(
                select(chat_channel.c.last_seq).where(chat_channel.c.channel_id == channel_id)
            )
        ).scalar_one_or_none()
        return int(value) if value is not None else 0

    return await db.run(unit, kind=Kind.READ, name="chat_last_id")


async def soft_delete(
    conn: AsyncConnection, channel_id: int, seq: int, actor_id: int
) -> int | None:
    """Mark message ``seq`` deleted inside the caller's transaction; return its author's id,
    or None if there is no such visible message."""
    row = (
        await conn.execute(
            update(chat_message)
            .where(
                chat_message.c.channel_id == channel_id,
                chat_message.c.seq == seq,
                chat_message.c.deleted_at.is_(None),
            )
            .values(deleted_at=utcnow(), deleted_by=actor_id)
            .returning(chat_message.c.author_id)
        )
    ).one_or_none()
    return int(row[0]) if row is not None else None


async def soft_delete_recent(
    conn: AsyncConnection,
    channel_id: int,
    author_id: int,
    *,
    since: datetime,
    at: datetime,
    actor_id: int,
    limit: int,
) -> list[int]:
    """Mark the author's newest ``limit`` visible messages sent since ``since`` deleted at
    ``at``, inside the caller's transaction; return their ids, oldest first.

    Messages already marked deleted at exactly ``at`` are returned too, so a transaction re-run
    after an unknown outcome reports the same ids. Reads the (channel, author, nonce) index.
    """
    m = chat_message.c
    found = await conn.execute(
        select(m.seq)
        .where(
            m.channel_id == channel_id,
            m.author_id == author_id,
            m.sent_at >= since,
            or_(m.deleted_at.is_(None), m.deleted_at == at),
        )
        .order_by(m.seq.desc())
        .limit(limit)
    )
    ids = sorted(int(seq) for seq in found.scalars())
    if ids:
        await conn.execute(
            update(chat_message)
            .where(m.channel_id == channel_id, m.seq.in_(ids), m.deleted_at.is_(None))
            .values(deleted_at=at, deleted_by=actor_id)
        )
    return ids


async def exists(conn: AsyncConnection, channel_id: int, seq: int) -> bool:
    """Tell whether message ``seq`` was ever stored in the channel (deleted or not).

    Ids are taken from the counter in the inserting transaction, so every id from 1 to the
    counter belongs to a stored message: one primary-key read, whatever the table's size.
    """
    last = (
        await conn.execute(
            select(chat_channel.c.last_seq).where(chat_channel.c.channel_id == channel_id)
        )
    ).scalar_one_or_none()
    return last is not None and 1 <= seq <= last
