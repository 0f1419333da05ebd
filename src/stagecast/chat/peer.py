"""One socket as its room sees it: frames written at once when the socket keeps up, a bounded
queue when it does not.

Fan-out is the hot path (2,000 sockets x 20 messages/s is 40,000 writes a second on one core),
so a delivery costs one call into the ASGI server, not a task switch: the room starts the
socket's send coroutine eagerly, and it almost always finishes without suspending (the
transport has room). Only when it does suspend (the client's TCP window is full) does the rest
of that send move to a task, and later frames wait in the peer's bounded queue behind it. A
queue that overflows drops the peer (close code 4408, ``slow_consumer``); it can resume by id.
A close that the client never lets through is abandoned after a timeout, so a client that does
not read costs nothing but its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from stagecast.chat import frames
from stagecast.chat.errors import SlowConsumer
from stagecast.chat.stats import HubStats
from stagecast.errors import StagecastError

log = logging.getLogger(__name__)

Message = dict[str, Any]  # an ASGI "websocket.send" message
Send = Callable[[Message], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]

# How long a peer's last frame and close may take before the peer is abandoned (seconds).
_CLOSE_TIMEOUT = 5.0


def outgoing(frame: frames.ServerFrame) -> Message:
    """Return the ASGI message that sends ``frame``; one is shared by every socket."""
    return {"type": "websocket.send", "text": frames.encode(frame)}


def _coroutine(awaitable: Awaitable[None]) -> Coroutine[Any, Any, None]:
    """Return ``awaitable`` as a coroutine (ASGI servers' sends already are)."""
    if asyncio.iscoroutine(awaitable):
        return awaitable

    async def wrapper() -> None:
        await awaitable

    return wrapper()


def _step(coro: Coroutine[Any, Any, None]) -> tuple[bool, Any]:
    """Run ``coro`` until it finishes or first suspends; return (finished, what it awaits)."""
    try:
        awaited = coro.send(None)
    except StopIteration:
        return True, None
    return False, awaited


async def _finish(coro: Coroutine[Any, Any, None], awaited: Any) -> None:
    """Drive a coroutine that suspended during ``_step`` to its end, as a Task would.

    ``awaited`` is what it yielded: an asyncio future (resume once it is done) or None (a bare
    yield: resume on the next loop iteration). Cancelling this task cancels the coroutine.
    """
    try:
        while True:
            if awaited is None:
                await asyncio.sleep(0)
            else:
                awaited._asyncio_future_blocking = False
                await asyncio.wait([awaited])
            finished, awaited = _step(coro)
            if finished:
                return
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            coro.throw(asyncio.CancelledError())
        coro.close()
        raise


class Peer:
    """A socket's sending side: eager writes, then a bounded queue drained by a task."""

    def __init__(
        self,
        send: Send,
        close: Close,
        *,
        account_id: int | None,
        staff: bool,
        max_queue: int,
        stats: HubStats,
    ) -> None:
        self.account_id = account_id
        self.staff = staff
        self.last_id = 0  # the highest message id queued or sent
        self.gone = asyncio.Event()  # set once the peer was dropped, kicked or closed
        self.closed = False
        self._send = send
        self._close = close
        self._max = max_queue
        self._stats = stats
        self._queue: deque[tuple[int, Message]] = deque()
        self._started = False
        self._writer: asyncio.Task[None] | None = None  # set while a send is in flight
        self._finisher: asyncio.Task[None] | None = None

    def deliver(self, message_id: int, message: Message) -> None:
        """Send message ``message_id`` unless this peer already has it."""
        if message_id <= self.last_id or self.closed:
            return
        self.last_id = message_id
        self._offer(message_id, message)

    def push(self, message: Message) -> None:
        """Send a control frame (deleted, error, ping, ...)."""
        if not self.closed:
            self._offer(0, message)

    def _offer(self, message_id: int, message: Message) -> None:
        if self._writer is not None or not self._started:
            if len(self._queue) >= self._max:
                self._stats.dropped += 1
                self.kick(SlowConsumer("you were not reading fast enough; reconnect with last_id"))
                return
            self._queue.append((message_id, message))
            return
        coro = _coroutine(self._send(message))
        try:
            finished, awaited = _step(coro)
        except Exception as exc:  # the client is gone
            self._lost(exc)
            return
        if finished:
            self._stats.delivered += 1
            return
        self._writer = asyncio.create_task(self._drain(coro, awaited), name="chat-peer-writer")

    def start(self, sent_upto: int) -> None:
        """Start sending; drop queued messages the client already got (resumed up to id
        ``sent_upto``)."""
        if sent_upto:
            self._queue = deque(item for item in self._queue if item[0] == 0 or item[0] > sent_upto)
            self.last_id = max(self.last_id, sent_upto)
        self._started = True
        if self._queue and not self.closed:
            self._writer = asyncio.create_task(self._drain(None, None), name="chat-peer-writer")

    async def _drain(self, coro: Coroutine[Any, Any, None] | None, awaited: Any) -> None:
        """Finish a suspended send, then write the queue out; eager sends resume after."""
        try:
            if coro is not None:
                await _finish(coro, awaited)
                self._stats.delivered += 1
            while self._queue:
                await self._send(self._queue.popleft()[1])
                self._stats.delivered += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost(exc)
        finally:
            self._writer = None

    def _lost(self, exc: Exception) -> None:
        log.debug("chat peer lost: %s", type(exc).__name__)
        self.closed = True
        self._queue.clear()
        self.gone.set()

    def kick(self, error: StagecastError, *, final: bool = True) -> None:
        """Close the socket with ``error``'s close code (after an error frame if ``final``).

        Returns at once; the close runs in the background, bounded by a timeout, because a
        client that does not read may never let the last frames out.
        """
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        message = outgoing(frames.Error.of(error)) if final else None
        self._finisher = asyncio.create_task(self._end(error, message), name="chat-peer-close")

    async def _end(self, error: StagecastError, message: Message | None) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                if message is not None:
                    await self._send(message)
                await self._close(error.ws_close_code, error.code)
        except Exception as exc:  # gone, or never read its last frames: abandon it
            log.debug("chat peer close ended: %s", type(exc).__name__)
        finally:
            self.gone.set()

    async def stop(self) -> None:
        """Stop sending (the socket has ended) and wait for a pending close."""
        self.closed = True
        self.gone.set()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        if self._finisher is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._finisher
