"""The review queue: messages a "hold" filter kept back, until a moderator approves or rejects.

A held message has no id in the channel's sequence yet: approving it stores it as a new message
(taking the next id, so resume stays "everything after id N") and publishes it like any post.
Moderators' sockets see the queue change live (``review`` and ``reviewed`` frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast import cursors
from stagecast.auth.models import account
from stagecast.auth.service import Account
from stagecast.channels.policy import Access, Action, require
from stagecast.chat import frames, messages
from stagecast.chat.filters import FilterRule
from stagecast.chat.messages import Draft, Message, OnAirMark
from stagecast.chat.models import chat_held
from stagecast.chat.moderation import record
from stagecast.chat.runtime import Chat
from stagecast.db import Kind
from stagecast.db.schema import utcnow
from stagecast.errors import NotFound

QUEUE = "chat.held"


@dataclass(frozen=True)
class HeldMessage:
    """A message waiting for review."""

    id: int
    author: str
    body: str
    sent_at: datetime
    filter_id: int | None


async def hold(
    chat: Chat,
    channel_id: int,
    author: Account,
    body: str,
    nonce: str | None,
    rule: FilterRule,
    onair: OnAirMark | None,
) -> int:
    """Queue a message for review; return its queue id (the same id for a replayed nonce)."""
    sent_at = utcnow()

    async def unit(conn: AsyncConnection) -> int:
        if nonce is not None:
            found = await _by_nonce(conn, channel_id, author.id, nonce)
            if found is not None:
                return found
        created = await conn.execute(
            insert(chat_held)
            .values(
                channel_id=channel_id,
                author_id=author.id,
                body=body,
                nonce=nonce,
                filter_id=rule.id,
                session_id=onair.session_id if onair else None,
                media_time=onair.media_time if onair else None,
                sent_at=sent_at,
            )
            .returning(chat_held.c.id)
        )
        return int(created.scalar_one())

    kind = Kind.IDEMPOTENT_WRITE if nonce is not None else Kind.WRITE
    try:
        held_id = await chat.db.run(unit, kind=kind, name="chat_hold")
    except IntegrityError:
        if nonce is None:
            raise
        replayed = await chat.db.run(
            lambda conn: _by_nonce(conn, channel_id, author.id, nonce),
            kind=Kind.READ,
            name="chat_held_by_nonce",
        )
        if replayed is None:
            raise
        held_id = replayed
    reason = f"{rule.kind} filter"
    await chat.publish(channel_id, frames.Review(held_id, author.username, body, sent_at, reason))
    return held_id


async def _by_nonce(
    conn: AsyncConnection, channel_id: int, author_id: int, nonce: str
) -> int | None:
    found = await conn.execute(
        select(chat_held.c.id).where(
            chat_held.c.channel_id == channel_id,
            chat_held.c.author_id == author_id,
            chat_held.c.nonce == nonce,
        )
    )
    value = found.scalar_one_or_none()
    return int(value) if value is not None else None


async def queue(
    chat: Chat, access: Access, *, after: str | None, limit: int
) -> tuple[list[HeldMessage], str | None]:
    """Return held messages, oldest first, and the next page's cursor."""
    require(access, Action.STUDIO)
    channel_id = access.channel_id
    after_id = 0
    if after is not None:
        raw = cursors.decode(chat.core.secret_key, QUEUE, channel_id, after, 1)
        after_id = cursors.int_key(raw[0])

    async def unit(conn: AsyncConnection) -> list[HeldMessage]:
        rows = await conn.execute(
            select(
                chat_held.c.id,
                account.c.username,
                chat_held.c.body,
                chat_held.c.sent_at,
                chat_held.c.filter_id,
            )
            .join(account, account.c.id == chat_held.c.author_id)
            .where(chat_held.c.channel_id == channel_id, chat_held.c.id > after_id)
            .order_by(chat_held.c.id)
            .limit(limit + 1)
        )
        return [HeldMessage(*row) for row in rows]

    found = await chat.db.run(unit, kind=Kind.READ, name="chat_held")
    cursor = None
    if len(found) > limit:
        cursor = cursors.encode(chat.core.secret_key, QUEUE, channel_id, (found[limit - 1].id,))
    return found[:limit], cursor


async def decide(
    chat: Chat, access: Access, actor: Account, held_id: int, *, approve: bool
) -> Message | None:
    """Approve (store and publish as a new message) or reject a held message.

    Returns the stored message on approval. Raises NotFound if it is not (or no longer) held:
    of two moderators deciding at once, one wins and the other gets NotFound.
    """
    require(access, Action.DELETE_MESSAGE)
    channel_id = access.channel_id

    async def unit(conn: AsyncConnection) -> Message | None:
        claimed = (
            await conn.execute(
                delete(chat_held)
                .where(chat_held.c.channel_id == channel_id, chat_held.c.id == held_id)
                .returning(
                    chat_held.c.author_id,
                    chat_held.c.body,
                    chat_held.c.session_id,
                    chat_held.c.media_time,
                    chat_held.c.sent_at,
                )
            )
        ).one_or_none()
        if claimed is None:
            raise NotFound("no such held message")
        stored = None
        if approve:
            author = (
                await conn.execute(select(account.c.username).where(account.c.id == claimed[0]))
            ).scalar_one()
            onair = OnAirMark(claimed[2], claimed[3]) if claimed[2] is not None else None
            draft = Draft(claimed[0], author, claimed[1], onair=onair, sent_at=claimed[4])
            stored = (await messages.insert_messages(conn, channel_id, [draft]))[0]
        action = "approve" if approve else "reject"
        message_id = stored.id if stored is not None else None
        await record(
            conn, channel_id, actor.id, action, target_id=claimed[0], message_id=message_id
        )
        return stored

    stored = await chat.db.run(unit, kind=Kind.WRITE, name="chat_decide")
    outcome: Literal["approved", "rejected"] = "approved" if approve else "rejected"
    await chat.publish(channel_id, frames.Reviewed(held_id, outcome))
    if stored is not None:
        chat.hub.stats.posted += 1
        await chat.publish(channel_id, frames.Message.of(stored))
    return stored
