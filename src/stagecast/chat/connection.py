"""One chat WebSocket: authenticate, authorise, greet, resume, then read frames until the end.

The socket is accepted first so that a refusal can say why: an ``error`` frame, then a close
with the error's code (4401 unauthorised, 4403 banned or cross-site, 4404 no such channel or
not allowed to see it, 1013 try again later). Bad frames get an ``error`` frame and the socket
stays open; only a frame beyond the hard size limit closes it (1009). Inbound frames are
metered per socket, so flooding costs the server little and gets error frames, not a
disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from stagecast.auth.deps import SESSION_COOKIE, identify
from stagecast.auth.service import Account
from stagecast.channels.policy import Access, Action, allowed
from stagecast.chat import frames, messages, service
from stagecast.chat.errors import BadOrigin, Banned
from stagecast.chat.hub import Room
from stagecast.chat.peer import Peer, outgoing
from stagecast.chat.rules import ChannelRules
from stagecast.chat.runtime import Chat, chat_of
from stagecast.config import Settings
from stagecast.db.schema import utcnow
from stagecast.errors import BadRequest, StagecastError, TooManyRequests
from stagecast.live.lookups import Lookups
from stagecast.live.runtime import live_of

log = logging.getLogger(__name__)

# Inbound frames per socket: a burst of _BURST, then _RATE per second.
_BURST, _RATE = 20.0, 10.0


@dataclass(frozen=True)
class _Session:
    slug: str
    access: Access
    account: Account | None
    rules: ChannelRules


class _Budget:
    """A token bucket for inbound frames, with at most one warning per second."""

    def __init__(self) -> None:
        self._tokens = _BURST
        self._at = time.monotonic()
        self._warned = 0.0

    def take(self) -> float | None:
        """Spend a token; return None, or the seconds until the next one if empty."""
        now = time.monotonic()
        self._tokens = min(_BURST, self._tokens + (now - self._at) * _RATE)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return (1 - self._tokens) / _RATE

    def should_warn(self) -> bool:
        """Tell whether to send a warning now (at most one per second)."""
        now = time.monotonic()
        if now - self._warned >= 1.0:
            self._warned = now
            return True
        return False


class ChatSocket:
    """The chat socket as a plain ASGI app, so deliveries call the server's ``send`` directly.

    Fan-out writes tens of thousands of frames a second; going through ``WebSocket.send_text``
    and the framework's per-route wrappers for each would cost more than the write itself.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one socket; ``scope["path_params"]["slug"]`` names the channel."""
        ws = WebSocket(scope, receive, send)
        server_send = scope.get(SERVER_SEND, send)
        lookups = (await live_of(ws)).lookups
        await _serve(ws, server_send, chat_of(ws), lookups, scope["path_params"]["slug"])


SERVER_SEND = "stagecast.server_send"


class ServerSend:
    """ASGI middleware (outermost): hand a socket the ASGI server's own ``send``.

    The framework's exception middleware wraps ``send`` in a coroutine of its own that only
    matters to HTTP responses; on the fan-out path that layer cost about a tenth of the
    server's CPU. The chat socket delivers frames through this unwrapped ``send`` (the
    handshake and close still go through the framework).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Record ``send`` in a WebSocket scope and pass the call on."""
        if scope["type"] == "websocket":
            scope[SERVER_SEND] = send
        await self.app(scope, receive, send)


async def _serve(ws: WebSocket, send: Send, chat: Chat, lookups: Lookups, slug: str) -> None:
    """Run the chat socket of ``slug`` until the client leaves, is dropped, or the server stops."""
    try:
        await ws.accept()
    except (WebSocketDisconnect, OSError, RuntimeError):
        return  # gone before the handshake completed
    try:
        session = await _authorize(ws, chat, lookups, slug)
        last_id = _last_id(ws)
    except StagecastError as exc:
        await _refuse(ws, exc)
        return
    account_id = session.account.id if session.account is not None else None
    peer = Peer(
        send,
        lambda code, reason: ws.close(code, reason),
        account_id=account_id,
        staff=allowed(session.access, Action.DELETE_MESSAGE),
        max_queue=chat.settings.chat_send_queue,
        stats=chat.hub.stats,
    )
    try:
        room = await chat.hub.join(session.access.channel_id, peer)
    except StagecastError as exc:
        await _refuse(ws, exc)
        return
    try:
        await _greet(ws, chat, session, room, peer, last_id)
        await _read(ws, chat, session, peer)
    except (WebSocketDisconnect, OSError, RuntimeError) as exc:
        log.debug("chat socket ended: %s", type(exc).__name__)
    except StagecastError as exc:
        peer.kick(exc)
    finally:
        chat.hub.leave(room, peer)
        await peer.stop()


async def _refuse(ws: WebSocket, error: StagecastError) -> None:
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await ws.send_text(frames.encode(frames.Error.of(error)))
        await ws.close(error.ws_close_code, error.code)


def _check_origin(ws: WebSocket, settings: Settings) -> None:
    """Refuse a cookie-authenticated socket opened by another site's page."""
    if "authorization" in ws.headers or SESSION_COOKIE not in ws.cookies:
        return
    origin = ws.headers.get("origin")
    if origin is None:  # not a browser: cross-site hijacking needs one
        return
    allowed_hosts = {ws.headers.get("host", "")}
    if settings.public_url:
        allowed_hosts.add(urlsplit(settings.public_url).netloc)
    if urlsplit(origin).netloc not in allowed_hosts:
        raise BadOrigin("cross-site WebSocket refused: Origin does not match the host")


async def _authorize(ws: WebSocket, chat: Chat, lookups: Lookups, slug: str) -> _Session:
    """Decide who may join from this process's caches (no database read once they are warm)."""
    _check_origin(ws, chat.settings)
    caller = await identify(ws, chat.core)
    access = await service.viewer_access(
        chat, lookups, slug, caller.account, token=ws.query_params.get("token")
    )
    rules = await service.require_reader(chat, access)
    if caller.account is not None:
        restriction = await chat.rules.restriction(access.channel_id, caller.account.id)
        if restriction is not None and restriction.banned:
            raise Banned("you are banned from this chat")
    return _Session(slug, access, caller.account, rules)


def _last_id(ws: WebSocket) -> int | None:
    raw = ws.query_params.get("last_id")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest("last_id must be a non-negative integer")
    return int(raw)


async def _greet(
    ws: WebSocket, chat: Chat, session: _Session, room: Room, peer: Peer, last_id: int | None
) -> None:
    """Send ``hello``, then what the client missed since ``last_id`` (or ``reset``)."""
    await ws.send_text(frames.encode(await _hello(chat, session, room)))
    if last_id is None:
        peer.start(0)
        return
    if last_id == room.last_id:
        # Caught up with this room: anything newer reaches the peer through the room, so a
        # reconnect after a restart reads nothing.
        await ws.send_text(frames.encode(frames.Resumed(last_id, 0)))
        peer.start(last_id)
        return
    channel_id = session.access.channel_id
    limit = chat.settings.chat_resume_limit
    missed = await messages.after(chat.db, channel_id, last_id, limit=limit + 1)
    newest = missed[-1].id if missed else room.last_id
    ahead = (
        not missed and last_id > newest and last_id > await messages.last_id(chat.db, channel_id)
    )
    if len(missed) > limit or ahead:
        chat.hub.stats.resets += 1
        await ws.send_text(frames.encode(frames.Reset(room.last_id)))
        peer.start(0)
        return
    for message in missed:
        await ws.send_text(frames.encode(frames.Message.of(message)))
    upto = max(last_id, newest) if missed else last_id
    await ws.send_text(frames.encode(frames.Resumed(upto, len(missed))))
    peer.start(upto)


async def _hello(chat: Chat, session: _Session, room: Room) -> frames.Hello:
    access, account = session.access, session.account
    timeout = frames.Timeout(None)
    if account is not None:
        restriction = await chat.rules.restriction(access.channel_id, account.id)
        if restriction is not None:
            timeout = frames.Timeout.at(restriction.expires_at, utcnow())
    powers = frames.Powers(
        delete=allowed(access, Action.DELETE_MESSAGE),
        timeout=allowed(access, Action.TIMEOUT),
        ban=allowed(access, Action.BAN),
        filters=allowed(access, Action.MANAGE_FILTERS),
    )
    return frames.Hello(
        channel=session.slug,
        last_id=room.last_id,
        user=account.username if account is not None else None,
        can_post=account is not None and allowed(access, Action.POST),
        moderator=powers if powers.granted else None,
        slow_mode=session.rules.slow_mode_seconds,
        timeout_until=timeout.until,
        max_length=chat.settings.chat_max_length,
        heartbeat=chat.settings.chat_heartbeat_seconds,
        timeout_remaining=timeout.remaining,
    )


async def _read(ws: WebSocket, chat: Chat, session: _Session, peer: Peer) -> None:
    """Handle frames until the client leaves or the peer is dropped or kicked."""
    gone = asyncio.ensure_future(peer.gone.wait())
    budget = _Budget()
    try:
        while True:
            receive = asyncio.ensure_future(ws.receive())
            await asyncio.wait({receive, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return
            wait = budget.take()
            if wait is not None:
                if budget.should_warn():
                    error = TooManyRequests("too many frames; slow down", retry_after=wait)
                    peer.push(outgoing(frames.Error.of(error)))
                continue
            if not await _frame(ws, chat, session, peer, message.get("text")):
                return
    finally:
        gone.cancel()


async def _frame(
    ws: WebSocket, chat: Chat, session: _Session, peer: Peer, text: str | None
) -> bool:
    """Handle one inbound frame; return False if the socket must close."""
    frame = frames.parse(text, chat.settings.chat_max_frame_bytes)
    if isinstance(frame, frames.Close):
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await ws.close(frame.code, frame.reason)
        return False
    if isinstance(frame, frames.Post):
        await _post(chat, session, peer, frame)
    elif isinstance(frame, frames.Ping):
        peer.push(outgoing(frames.Pong()))
    elif isinstance(frame, frames.Error):
        peer.push(outgoing(frame))
    return True  # a pong needs no answer


async def _post(chat: Chat, session: _Session, peer: Peer, frame: frames.Post) -> None:
    try:
        posted = await service.post(chat, session.access, session.account, frame.body, frame.nonce)
    except StagecastError as exc:
        peer.push(outgoing(frames.Error.of(exc, frame.echo)))
        return
    if posted.held_id is not None:
        peer.push(outgoing(frames.Held(frame.echo)))
