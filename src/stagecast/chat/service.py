"""Chat use cases: post a message, read history, delete a message.

Posting runs the policy (who may post, bans and timeouts, slow mode, the per-user rate limit,
word filters) before one transaction stores the message, and publishes it on the bus only after
that transaction committed. Every process, this one included, delivers it from the bus. If the
publish fails the message still exists: this process's room is told to read it back from the
database, and other processes find it at their next heartbeat or resume.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast import cursors
from stagecast.auth.service import Account
from stagecast.channels import tokens
from stagecast.channels.policy import Access, Action, allowed, require, with_token
from stagecast.channels.service import SLUG_RE, access_to
from stagecast.chat import frames, messages, moderation, review
from stagecast.chat.errors import Blocked, SlowMode
from stagecast.chat.messages import Draft, Message
from stagecast.chat.rules import ChannelRules
from stagecast.chat.runtime import Chat
from stagecast.db import Kind
from stagecast.errors import NotFound, TooManyRequests, Unauthorized, Unprocessable
from stagecast.live.lookups import Lookups

HISTORY = "chat.history"


@dataclass(frozen=True)
class Posted:
    """The outcome of a post: the stored message, or the id of the held one."""

    message: Message | None = None
    held_id: int | None = None


async def post(
    chat: Chat, access: Access, author: Account | None, body: object, nonce: object = None
) -> Posted:
    """Post ``body`` as ``author`` in the channel of ``access``.

    Raises Unauthorized (anonymous), NotFound (may not see the channel), Unprocessable (bad
    body or nonce), Banned, TimedOut, SlowMode, TooManyRequests, Blocked, and the database
    errors. A replayed ``nonce`` returns the message stored the first time.
    """
    if author is None:
        raise Unauthorized("sign in to chat")
    if not allowed(access, Action.POST):
        raise NotFound("channel not found")
    text = messages.clean_body(body, chat.settings.chat_max_length)
    client_nonce = messages.clean_nonce(nonce)
    channel_id = access.channel_id
    restriction = await chat.rules.restriction(channel_id, author.id)
    error = restriction.error() if restriction is not None else None
    if error is not None:
        raise error
    rules = await chat.rules.channel(channel_id)
    await _limit(chat, access, author, rules.slow_mode_seconds)
    rule = None if access.is_staff else rules.filters.match(text)
    if rule is not None and rule.action == "block":
        raise Blocked("your message was refused by a word filter of this channel")
    onair = await chat.onair.mark(channel_id)
    if rule is not None:
        held = await review.hold(chat, channel_id, author, text, client_nonce, rule, onair)
        return Posted(held_id=held)
    draft = Draft(author.id, author.username, text, nonce=client_nonce, onair=onair)
    message, created = await chat.writer.store(channel_id, draft)
    if created:
        chat.hub.stats.posted += 1
    await chat.publish(channel_id, frames.Message.of(message))
    return Posted(message=message)


async def _limit(chat: Chat, access: Access, author: Account, slow_mode: int) -> None:
    """Apply slow mode (moderators exempt) and the per-user rate limit."""
    if slow_mode > 0 and not access.is_staff:
        key = f"chat:slow:{access.channel_id}:{author.id}"
        wait = await chat.limiter.hit(key, 1, slow_mode)
        if wait is not None:
            raise SlowMode(f"slow mode: one message every {slow_mode} s", retry_after=wait)
    settings = chat.settings
    wait = await chat.limiter.hit(
        f"chat:rate:{author.id}", settings.chat_rate_limit, settings.chat_rate_window_seconds
    )
    if wait is not None:
        raise TooManyRequests("you are sending messages too fast", retry_after=wait)


def _known_slug(slug: str) -> str:
    """Return ``slug`` if a channel could have it; NotFound without a query otherwise (a NUL,
    which PostgreSQL refuses in text, or anything else no channel may be called)."""
    if not SLUG_RE.fullmatch(slug):
        raise NotFound("channel not found")
    return slug


async def channel_access(
    chat: Chat, slug: str, caller: Account | None, *, token: str | None = None
) -> Access:
    """Return the caller's access to channel ``slug`` as the database has it now; a valid
    playback token (``?token=``) opens a private channel for viewing. Raises NotFound for an
    unknown channel. For moderation and posting over HTTP; viewers use ``viewer_access``."""
    found, access = await access_to(chat.db, _known_slug(slug), caller)
    return with_token(access, chat.core.secret_key, token, tokens.channel_target(found.id))


async def viewer_access(
    chat: Chat, lookups: Lookups, slug: str, caller: Account | None, *, token: str | None = None
) -> Access:
    """Return the caller's access to channel ``slug`` from this process's caches.

    The channel (id, owner, visibility) comes from ``lookups``, the caller's moderator grant
    from the channel's roster (``Rules.member``); once warm, a join reads nothing, and
    concurrent misses share one query per slug and one per channel. Raises NotFound for an
    unknown channel (cached too).
    """
    found = await lookups.channel(_known_slug(slug))
    if found is None:
        raise NotFound("channel not found")
    grant = None
    if caller is not None:
        grant = (await chat.rules.member(found.channel_id, caller.id)).grant
    access = Access(found.channel_id, found.owner_id, found.visibility, caller, moderator=grant)
    return with_token(access, chat.core.secret_key, token, tokens.channel_target(found.channel_id))


async def require_reader(chat: Chat, access: Access) -> ChannelRules:
    """Return the channel's chat rules if the caller may read its chat.

    Raises NotFound (may not view the channel) or Unauthorized (anonymous reading is off for
    the instance or the channel).
    """
    require(access, Action.VIEW)
    rules = await chat.rules.channel(access.channel_id)
    anonymous_ok = chat.settings.chat_anonymous_read and rules.anonymous_read
    if access.account is None and not anonymous_ok:
        raise Unauthorized("sign in to read this chat")
    return rules


async def history(
    chat: Chat, access: Access, *, before: str | None, limit: int
) -> tuple[list[Message], str | None]:
    """Return a page of visible messages, newest first, and the cursor of the next page.

    Raises NotFound unless the caller may view the channel, Unauthorized for anonymous
    callers where anonymous reading is off, BadRequest for a bad cursor.
    """
    await require_reader(chat, access)
    if not 1 <= limit <= 100:
        raise Unprocessable("limit must be 1-100")
    before_id = None
    if before is not None:
        key = cursors.decode(chat.core.secret_key, HISTORY, access.channel_id, before, 1)
        before_id = cursors.int_key(key[0])
    found, more = await messages.page(chat.db, access.channel_id, before=before_id, limit=limit)
    cursor = None
    if more and found:
        cursor = cursors.encode(chat.core.secret_key, HISTORY, access.channel_id, (found[-1].id,))
    return found, cursor


async def delete(chat: Chat, access: Access, actor: Account, message_id: int) -> None:
    """Soft-delete message ``message_id``; every client removes it. Raises NotFound.

    Deleting a message that is already deleted succeeds, so a retried request is safe.
    """
    require(access, Action.DELETE_MESSAGE)
    channel_id = access.channel_id

    async def unit(conn: AsyncConnection) -> None:
        author_id = await messages.soft_delete(conn, channel_id, message_id, actor.id)
        if author_id is None:
            # Already deleted is success (a replayed request), never deleted is a 404.
            if not await messages.exists(conn, channel_id, message_id):
                raise NotFound("message not found")
            return
        await moderation.record(
            conn, channel_id, actor.id, "delete", target_id=author_id, message_id=message_id
        )

    await chat.db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="chat_delete")
    await chat.publish(channel_id, frames.Deleted(message_id))
