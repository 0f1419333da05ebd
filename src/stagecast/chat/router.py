"""Chat over HTTP and WebSocket: history, posting, moderation, and the socket.

Routers parse, authorise through the domain functions (which ask the one policy function) and
shape responses; failures are domain errors rendered by the one handler. Moderation endpoints
answer 404 to anyone who is not the owner, a moderator or an admin of the channel.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from starlette.requests import HTTPConnection
from starlette.routing import WebSocketRoute

from stagecast.auth.deps import AccountDep, MaybeAccountDep
from stagecast.chat import connection, moderation, review, service
from stagecast.chat.runtime import Chat, chat_of
from stagecast.chat.schemas import (
    BanIn,
    BanOut,
    ChatSettingsIn,
    ChatSettingsOut,
    DecisionOut,
    FilterIn,
    FilterList,
    FilterOut,
    HeldOut,
    HeldPage,
    LogEntryOut,
    LogPage,
    MessageOut,
    MessagePage,
    PostIn,
    PostOut,
    RestrictionOut,
    RestrictionPage,
    TimeoutIn,
)
from stagecast.errors import Unprocessable, error_responses
from stagecast.live.runtime import LiveDep

router = APIRouter(prefix="/api/v1/channels/{slug}/chat", tags=["chat"])


async def get_chat(connection: HTTPConnection) -> Chat:
    """FastAPI dependency: this process's chat component."""
    return chat_of(connection)


ChatDep = Annotated[Chat, Depends(get_chat)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1-100")]
Cursor = Annotated[str | None, Query(max_length=1024, description="Opaque cursor")]
Token = Annotated[str | None, Query(max_length=1024, description="Playback token")]
# Ids are 64-bit signed in the database: a larger one is a 422, never an overflow.
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/messages", response_model=MessagePage)
async def history(
    slug: str,
    chat: ChatDep,
    live: LiveDep,
    caller: MaybeAccountDep,
    before: Cursor = None,
    limit: Limit = 50,
    token: Token = None,
) -> MessagePage:
    """Return chat history, newest first, deleted messages excluded (keyset-paged)."""
    access = await service.viewer_access(chat, live.lookups, slug, caller, token=token)
    found, cursor = await service.history(chat, access, before=before, limit=limit)
    return MessagePage(
        items=[MessageOut.of(m) for m in found], has_more=cursor is not None, next_before=cursor
    )


@router.post("/messages", response_model=PostOut, status_code=201, responses=error_responses(429))
async def post_message(
    slug: str, body: PostIn, response: Response, chat: ChatDep, caller: AccountDep
) -> PostOut:
    """Post a message (201), or have it held for review by a filter (202)."""
    access = await service.channel_access(chat, slug, caller)
    posted = await service.post(chat, access, caller, body.body, body.nonce)
    if posted.message is None:
        response.status_code = 202
        return PostOut(status="held", held_id=posted.held_id)
    return PostOut(status="posted", message=MessageOut.of(posted.message))


@router.delete("/messages/{message_id}", status_code=204)
async def delete_message(slug: str, message_id: Id, chat: ChatDep, caller: AccountDep) -> None:
    """Delete a message for everyone (moderators with the delete permission)."""
    access = await service.channel_access(chat, slug, caller)
    await service.delete(chat, access, caller, message_id)


@router.get("/settings", response_model=ChatSettingsOut)
async def get_settings(
    slug: str, chat: ChatDep, live: LiveDep, caller: MaybeAccountDep, token: Token = None
) -> ChatSettingsOut:
    """Return the channel's chat settings (anyone who may read the chat)."""
    access = await service.viewer_access(chat, live.lookups, slug, caller, token=token)
    rules = await service.require_reader(chat, access)
    return ChatSettingsOut(
        slow_mode_seconds=rules.slow_mode_seconds, anonymous_read=rules.anonymous_read
    )


@router.patch("/settings", response_model=ChatSettingsOut)
async def update_settings(
    slug: str, body: ChatSettingsIn, chat: ChatDep, caller: AccountDep
) -> ChatSettingsOut:
    """Change slow mode (moderators with filter rights) or anonymous reading (owner, admin)."""
    if body.slow_mode_seconds is None and body.anonymous_read is None:
        raise Unprocessable("nothing to change")
    access = await service.channel_access(chat, slug, caller)
    rules = await moderation.update_settings(
        chat,
        access,
        caller,
        slow_mode_seconds=body.slow_mode_seconds,
        anonymous_read=body.anonymous_read,
    )
    return ChatSettingsOut(
        slow_mode_seconds=rules.slow_mode_seconds, anonymous_read=rules.anonymous_read
    )


@router.get("/restrictions", response_model=RestrictionPage)
async def list_restrictions(
    slug: str, chat: ChatDep, caller: AccountDep, before: Cursor = None, limit: Limit = 50
) -> RestrictionPage:
    """List bans and running timeouts, newest first (keyset-paged)."""
    access = await service.channel_access(chat, slug, caller)
    found, cursor = await moderation.restrictions(chat, access, before=before, limit=limit)
    return RestrictionPage(items=[RestrictionOut.of(r) for r in found], next_before=cursor)


@router.put("/bans/{username}", response_model=BanOut, responses=error_responses(409))
async def ban(slug: str, username: str, body: BanIn, chat: ChatDep, caller: AccountDep) -> BanOut:
    """Ban a user from the chat until unbanned; their sockets close (4403) everywhere. With
    ``remove_messages``, their recent messages are deleted too and vanish from every client."""
    access = await service.channel_access(chat, slug, caller)
    done = await moderation.restrict(
        chat,
        access,
        caller,
        username,
        seconds=None,
        reason=body.reason,
        purge=body.remove_messages,
    )
    return BanOut(
        username=username,
        kind="ban",
        expires_at=None,
        reason=body.reason,
        removed_messages=list(done.removed),
    )


@router.delete("/bans/{username}", status_code=204)
async def unban(slug: str, username: str, chat: ChatDep, caller: AccountDep) -> None:
    """Lift a ban."""
    access = await service.channel_access(chat, slug, caller)
    await moderation.release(chat, access, caller, username, ban=True)


@router.put("/timeouts/{username}", response_model=RestrictionOut, responses=error_responses(409))
async def timeout(
    slug: str, username: str, body: TimeoutIn, chat: ChatDep, caller: AccountDep
) -> RestrictionOut:
    """Time a user out: they can read but not post until it ends."""
    access = await service.channel_access(chat, slug, caller)
    done = await moderation.restrict(
        chat, access, caller, username, seconds=body.seconds, reason=body.reason
    )
    return RestrictionOut(
        username=username, kind="timeout", expires_at=done.until, reason=body.reason
    )


@router.delete("/timeouts/{username}", status_code=204)
async def lift_timeout(slug: str, username: str, chat: ChatDep, caller: AccountDep) -> None:
    """End a timeout early."""
    access = await service.channel_access(chat, slug, caller)
    await moderation.release(chat, access, caller, username, ban=False)


@router.get("/filters", response_model=FilterList)
async def list_filters(slug: str, chat: ChatDep, caller: AccountDep) -> FilterList:
    """List the channel's word filters."""
    access = await service.channel_access(chat, slug, caller)
    return FilterList(items=[FilterOut.of(f) for f in await moderation.filters(chat, access)])


@router.post("/filters", response_model=FilterOut, status_code=201)
async def add_filter(slug: str, body: FilterIn, chat: ChatDep, caller: AccountDep) -> FilterOut:
    """Add a word filter (RE2 syntax for patterns; 422 if it does not compile safely)."""
    access = await service.channel_access(chat, slug, caller)
    rule = await moderation.add_filter(
        chat, access, caller, kind=body.kind, pattern=body.pattern, action=body.action
    )
    return FilterOut.of(rule)


@router.delete("/filters/{filter_id}", status_code=204)
async def remove_filter(slug: str, filter_id: Id, chat: ChatDep, caller: AccountDep) -> None:
    """Remove a word filter."""
    access = await service.channel_access(chat, slug, caller)
    await moderation.remove_filter(chat, access, caller, filter_id)


@router.get("/held", response_model=HeldPage)
async def list_held(
    slug: str, chat: ChatDep, caller: AccountDep, after: Cursor = None, limit: Limit = 50
) -> HeldPage:
    """List messages held for review, oldest first (keyset-paged)."""
    access = await service.channel_access(chat, slug, caller)
    found, cursor = await review.queue(chat, access, after=after, limit=limit)
    return HeldPage(items=[HeldOut.of(h) for h in found], next_after=cursor)


@router.post("/held/{held_id}/approve", response_model=DecisionOut)
async def approve(slug: str, held_id: Id, chat: ChatDep, caller: AccountDep) -> DecisionOut:
    """Publish a held message."""
    access = await service.channel_access(chat, slug, caller)
    stored = await review.decide(chat, access, caller, held_id, approve=True)
    return DecisionOut(status="approved", message=MessageOut.of(stored) if stored else None)


@router.post("/held/{held_id}/reject", response_model=DecisionOut)
async def reject(slug: str, held_id: Id, chat: ChatDep, caller: AccountDep) -> DecisionOut:
    """Discard a held message."""
    access = await service.channel_access(chat, slug, caller)
    await review.decide(chat, access, caller, held_id, approve=False)
    return DecisionOut(status="rejected")


@router.get("/log", response_model=LogPage)
async def moderation_log(
    slug: str, chat: ChatDep, caller: AccountDep, before: Cursor = None, limit: Limit = 50
) -> LogPage:
    """Return the moderation log, newest first (keyset-paged)."""
    access = await service.channel_access(chat, slug, caller)
    found, cursor = await moderation.log(chat, access, before=before, limit=limit)
    return LogPage(items=[LogEntryOut.of(e) for e in found], next_before=cursor)


# The socket is a plain ASGI app (see ``connection.serve``); README "Chat" documents it.
router.routes.append(
    WebSocketRoute(f"{router.prefix}/socket", connection.ChatSocket(), name="chat_socket")
)
