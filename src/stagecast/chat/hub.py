"""This process's chat sockets: one room per channel, one bus subscription per room.

Every message reaches a socket the same way, whichever process stored it: the bus delivers it
to the channel's room, the room puts it in id order (a small reorder buffer, then a gap-fill
from the database if an id stays missing for ``chat_reorder_wait_seconds``), serialises it to
JSON once and offers the same text to every peer. A ``Gap`` from the bus (overflow, a lost
Redis connection) makes the room resynchronise from the database, and each heartbeat compares
the room with the database so a message whose publish failed still arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import Field

from stagecast.bus import Bus, Gap, Subscription
from stagecast.bus.base import Payload
from stagecast.bus.topics import Topic
from stagecast.chat import frames, messages
from stagecast.chat.errors import Banned, ServerRestarting
from stagecast.chat.peer import Message, Peer, outgoing
from stagecast.chat.stats import HubStats
from stagecast.config import Settings
from stagecast.db import Database
from stagecast.db.schema import utcnow
from stagecast.errors import StagecastError

log = logging.getLogger(__name__)

_MAX_PENDING = 256  # ids held back waiting for a missing one before filling from the database
_MAX_SUPPRESSED = 1024  # ids deleted before they arrived, so a late arrival is not shown
_ROOM_QUEUE = 8192  # bus messages a room may have unread before it gets a Gap
_RETRY_FILL = 1.0  # seconds before retrying a failed gap-fill
_SLICE = 256  # peers served between two yields to the event loop
_POKE: Payload = {}  # put on a room's subscription to wake its pump; never published


@dataclass(frozen=True)
class ChatEvent:
    """A frame for every socket of a channel, published after the change it reports committed."""

    frame: Annotated[frames.Fanout, Field(discriminator="type")]


# ``chat.<channel_id>``: read once per bus message by the channel's room in each process.
CHANNEL_TOPIC: Topic[ChatEvent] = Topic("chat.{}", ChatEvent)


class Room:
    """One channel's sockets in this process and the task that feeds them in id order."""

    def __init__(self, hub: Hub, channel_id: int) -> None:
        self.hub = hub
        self.channel_id = channel_id
        self.peers: set[Peer] = set()
        self.last_id = 0  # the highest id handed to the peers
        self.joining = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending: dict[int, frames.Message] = {}
        self._outbox: deque[tuple[int, Message, bool]] = deque()
        self._suppressed: set[int] = set()
        self._fill_at: float | None = None
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Subscribe, then read the newest id: anything later is on the subscription."""
        try:
            self._sub = await CHANNEL_TOPIC.subscribe(
                self.hub.bus, self.channel_id, maxsize=_ROOM_QUEUE
            )
            self.last_id = await messages.last_id(self.hub.db, self.channel_id)
        except BaseException as exc:
            if self._sub is not None:
                self._sub.close()
            if isinstance(exc, asyncio.CancelledError):
                self.ready.cancel()
            else:
                self.ready.set_exception(exc)
            raise
        self._task = asyncio.create_task(self._pump(), name=f"chat-room-{self.channel_id}")
        self.ready.set_result(None)

    def close(self) -> None:
        """Stop the pump and unsubscribe."""
        if self._task is not None:
            self._task.cancel()
        if self._sub is not None:
            self._sub.close()

    # Delivery.

    def broadcast(self, frame: frames.ServerFrame, *, staff_only: bool = False) -> None:
        """Send a control frame to every peer (or only to moderators) at once."""
        message = outgoing(frame)
        for peer in tuple(self.peers):
            if peer.staff or not staff_only:
                peer.push(message)

    def _deliver(self, frame: frames.Message) -> None:
        """Queue message ``frame`` for every peer (the pump sends it next)."""
        # Serialised once; the same ASGI message goes to every socket.
        self._outbox.append((frame.id, outgoing(frame), False))
        self.last_id = frame.id

    def _announce(self, frame: frames.ServerFrame, *, staff_only: bool = False) -> None:
        """Queue a control frame behind the messages already queued."""
        self._outbox.append((0, outgoing(frame), staff_only))

    async def _send_out(self) -> None:
        """Hand queued frames to every peer, yielding to the loop between slices of peers so
        a large room does not hold up the database calls of the posts behind it."""
        while self._outbox:
            message_id, message, staff_only = self._outbox.popleft()
            peers = tuple(self.peers)
            for start in range(0, len(peers), _SLICE):
                if start:
                    await asyncio.sleep(0)
                for peer in peers[start : start + _SLICE]:
                    if message_id:
                        peer.deliver(message_id, message)
                    elif peer.staff or not staff_only:
                        peer.push(message)

    def poke(self) -> None:
        """Check the database now: a message may have been stored without being published."""
        self._fill_at = asyncio.get_running_loop().time()
        if self._sub is not None:
            self._sub.deliver(_POKE)

    # The pump: bus messages in, ordered frames out.

    async def _pump(self) -> None:
        assert self._sub is not None
        loop = asyncio.get_running_loop()
        beat = self.hub.settings.chat_heartbeat_seconds
        next_beat = loop.time() + beat
        while True:
            wake = next_beat if self._fill_at is None else min(next_beat, self._fill_at)
            item = await self._sub.get(timeout=max(wake - loop.time(), 0.0))
            try:
                if isinstance(item, Gap):
                    await self._resync()
                elif item is not None:
                    self._handle(item)
                now = loop.time()
                if self._fill_at is not None and now >= self._fill_at:
                    self._fill_at = None
                    await (self._fill() if self._pending else self._resync())
                if now >= next_beat:
                    next_beat = now + beat
                    await self._heartbeat()
                await self._send_out()
            except StagecastError as exc:  # the database is unavailable: try again later
                log.warning("chat room %d: %s", self.channel_id, exc.message)
                self._fill_at = loop.time() + _RETRY_FILL
            except Exception:  # a bug must not silence the channel for good
                log.exception("chat room %d failed to deliver", self.channel_id)
                self._fill_at = loop.time() + _RETRY_FILL

    def _handle(self, payload: Payload) -> None:
        """Read one bus message (decoded once for the whole room) and act on its frame."""
        if payload is _POKE:
            return
        try:
            frame = CHANNEL_TOPIC.decode(payload).frame
        except ValueError:  # not from a producer of this version: skip it, keep the room
            log.warning("chat room %d: skipped a malformed bus message", self.channel_id)
            return
        if isinstance(frame, frames.Message):
            self._on_message(frame)
        elif isinstance(frame, frames.Deleted):
            self._on_deleted(frame.id)
            self._announce(frame)
        elif isinstance(frame, frames.Purged):
            for message_id in frame.ids:
                self._on_deleted(message_id)
            self._announce(frame)
        else:
            self._announce(frame, staff_only=True)

    def _on_message(self, frame: frames.Message) -> None:
        message_id = frame.id
        if message_id <= self.last_id:
            return
        if message_id in self._suppressed:  # deleted before it got here
            self._suppressed.discard(message_id)
            if message_id == self.last_id + 1:
                self.last_id = message_id
                self._flush()
            return
        if message_id != self.last_id + 1:
            self._pending[message_id] = frame
            if self._fill_at is None:
                wait = self.hub.settings.chat_reorder_wait_seconds
                self._fill_at = asyncio.get_running_loop().time() + wait
            if len(self._pending) > _MAX_PENDING:
                self._fill_at = asyncio.get_running_loop().time()
            return
        self._deliver(frame)
        self._flush()

    def _flush(self) -> None:
        """Deliver pending messages that are now next in line."""
        while (following := self._pending.pop(self.last_id + 1, None)) is not None:
            self._deliver(following)
        for stale in [i for i in self._pending if i <= self.last_id]:
            del self._pending[stale]
        if not self._pending:
            self._fill_at = None
        elif self._fill_at is None:
            wait = self.hub.settings.chat_reorder_wait_seconds
            self._fill_at = asyncio.get_running_loop().time() + wait

    def _on_deleted(self, message_id: int) -> None:
        """Make sure message ``message_id`` is never delivered from now on."""
        if message_id > self.last_id:
            self._pending.pop(message_id, None)
            if len(self._suppressed) >= _MAX_SUPPRESSED:
                self._suppressed.clear()
            self._suppressed.add(message_id)

    async def _fill(self) -> None:
        """Read the ids still missing below the highest pending one from the database."""
        upto = max(self._pending)
        limit = self.hub.settings.chat_resume_limit
        if upto - self.last_id > limit:
            await self._resync()
            return
        found = await messages.after(
            self.hub.db, self.channel_id, self.last_id, limit=limit, upto=upto
        )
        self.hub.stats.gap_fills += 1
        for message in found:
            if message.id > self.last_id and message.id not in self._suppressed:
                self._deliver(frames.Message.of(message))
        self.last_id = max(self.last_id, upto)
        self._flush()

    async def _resync(self) -> None:
        """Catch up with the database after messages may have been lost on the bus."""
        self.hub.stats.resyncs += 1
        limit = self.hub.settings.chat_resume_limit
        found = await messages.after(self.hub.db, self.channel_id, self.last_id, limit=limit + 1)
        if len(found) > limit:
            newest = await messages.last_id(self.hub.db, self.channel_id)
            self.hub.stats.resets += 1
            self.last_id = newest
            self._announce(frames.Reset(newest))
        else:
            for message in found:
                if message.id > self.last_id:
                    self._deliver(frames.Message.of(message))
        self._flush()

    async def _heartbeat(self) -> None:
        self._announce(frames.Ping())
        if (
            not self._pending
            and await messages.last_id(self.hub.db, self.channel_id) > self.last_id
        ):
            await self._resync()

    # Moderation effects on connected sockets.

    def restrict(self, account_id: int, until: datetime | None, banned: bool) -> None:
        """Close a banned account's sockets; tell a timed-out (or released) one until when;
        tell the moderators that the list of bans and timeouts changed."""
        timeout = outgoing(frames.Timeout.at(until, utcnow()))
        for peer in tuple(self.peers):
            if peer.account_id != account_id:
                continue
            if banned:
                self.peers.discard(peer)
                peer.kick(Banned("you are banned from this chat"))
            else:
                peer.push(timeout)
        self.broadcast(frames.RestrictionsChanged(), staff_only=True)


class Hub:
    """Every room of this process, and the counters /metrics reads."""

    def __init__(self, db: Database, bus: Bus, settings: Settings) -> None:
        self.db = db
        self.bus = bus
        self.settings = settings
        self.stats = HubStats()
        self._rooms: dict[int, Room] = {}
        self._closing = False

    def room(self, channel_id: int) -> Room | None:
        """Return the channel's room if it has sockets here."""
        return self._rooms.get(channel_id)

    async def join(self, channel_id: int, peer: Peer) -> Room:
        """Add ``peer`` to the channel's room, opening the room on first use.

        Raises ServerRestarting during shutdown, or the database/bus errors of opening.
        """
        if self._closing:
            raise ServerRestarting("the server is restarting")
        room = self._rooms.get(channel_id)
        if room is None:
            room = self._rooms[channel_id] = Room(self, channel_id)
            self.stats.rooms = len(self._rooms)
            opening = asyncio.create_task(room.open(), name=f"chat-room-open-{channel_id}")
            opening.add_done_callback(lambda t: t.cancelled() or t.exception())
        room.joining += 1
        try:
            await asyncio.shield(room.ready)
        except BaseException:
            room.joining -= 1
            self._close_if_idle(room)
            raise
        room.joining -= 1
        room.peers.add(peer)
        self.stats.connected += 1
        return room

    def leave(self, room: Room, peer: Peer) -> None:
        """Remove ``peer``; close the room when nobody is left in it."""
        if peer in room.peers:
            room.peers.discard(peer)
        self.stats.connected -= 1
        self._close_if_idle(room)

    def _close_if_idle(self, room: Room) -> None:
        if room.peers or room.joining or self._rooms.get(room.channel_id) is not room:
            return
        del self._rooms[room.channel_id]
        self.stats.rooms = len(self._rooms)
        room.close()

    def poke(self, channel_id: int) -> None:
        """Make the channel's room (if any) check the database for undelivered messages."""
        room = self._rooms.get(channel_id)
        if room is not None:
            room.poke()

    def restrict(
        self, channel_id: int, account_id: int, until: datetime | None, banned: bool
    ) -> None:
        """Apply a ban or timeout to the account's sockets on this channel, if any."""
        room = self._rooms.get(channel_id)
        if room is not None:
            room.restrict(account_id, until, banned)

    def announce(self, channel_id: int, frame: frames.ServerFrame) -> None:
        """Send a control frame to every socket of the channel in this process."""
        room = self._rooms.get(channel_id)
        if room is not None:
            room.broadcast(frame)

    async def close(self) -> None:
        """Tell every socket the server is restarting (close code 1012) and stop every room."""
        self._closing = True
        peers = [peer for room in self._rooms.values() for peer in room.peers]
        for peer in peers:
            peer.kick(ServerRestarting("the server is restarting; reconnect"))
        for room in list(self._rooms.values()):
            room.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(6.0):
                await asyncio.gather(*(peer.gone.wait() for peer in peers))
