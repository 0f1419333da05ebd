"""The chat component of one process: the hub, the rule cache and the on-air cache, plus the
tasks that apply moderation and moderator announcements from the bus. ``start_chat`` is the
app starter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from starlette.requests import HTTPConnection

from stagecast.bus import Bus, BusUnavailable, Gap, Subscription
from stagecast.bus.topics import Topic
from stagecast.channels.service import MODERATORS_TOPIC, ModeratorsChanged
from stagecast.chat import frames
from stagecast.chat.hub import CHANNEL_TOPIC, ChatEvent, Hub
from stagecast.chat.onair import OnAir
from stagecast.chat.rules import TOPIC, Announcement, Restriction, Rules
from stagecast.chat.writer import MessageWriter
from stagecast.config import Settings
from stagecast.core import Core
from stagecast.db import Database
from stagecast.ratelimit import RateLimiter

log = logging.getLogger(__name__)

P = TypeVar("P")


@dataclass
class Chat:
    """Everything chat keeps per process; handlers reach it with ``chat_of``."""

    core: Core
    hub: Hub
    rules: Rules
    onair: OnAir
    writer: MessageWriter
    _listeners: list[asyncio.Task[None]] = field(default_factory=list, repr=False)
    _subscriptions: list[Subscription] = field(default_factory=list, repr=False)

    @property
    def db(self) -> Database:
        """Return the database."""
        return self.core.db

    @property
    def bus(self) -> Bus:
        """Return the bus."""
        return self.core.bus

    @property
    def limiter(self) -> RateLimiter:
        """Return the rate limiter (Redis-backed when Redis is configured)."""
        return self.core.limiter

    @property
    def settings(self) -> Settings:
        """Return the settings."""
        return self.core.settings

    async def start(self) -> None:
        """Subscribe to moderation and moderator announcements and start applying them."""
        await self._follow(TOPIC, self.apply)
        await self._follow(MODERATORS_TOPIC, self._moderators_changed)

    async def _follow(self, topic: Topic[P], handle: Callable[[P], None]) -> None:
        subscription = await topic.subscribe(self.bus, maxsize=4096)
        self._subscriptions.append(subscription)
        task = asyncio.create_task(self._listen(subscription, topic, handle), name="chat-rules")
        self._listeners.append(task)

    async def _listen(
        self, subscription: Subscription, topic: Topic[P], handle: Callable[[P], None]
    ) -> None:
        while True:
            item = await subscription.get()
            if isinstance(item, Gap):
                self.rules.clear()  # an announcement may have been lost
            elif item is not None:
                try:
                    payload = topic.decode(item)
                except ValueError:
                    log.warning("chat: ignored a malformed announcement on %s", topic)
                else:
                    handle(payload)

    def _moderators_changed(self, changed: ModeratorsChanged) -> None:
        self.rules.moderators_changed(changed.channel_id)

    def apply(self, announcement: Announcement) -> None:
        """Apply a moderation announcement to this process's cache and sockets."""
        channel_id, account_id = announcement.channel_id, announcement.account_id
        if account_id is None:
            self.rules.invalidate(channel_id)
            if announcement.slow_mode is not None:
                self.hub.announce(channel_id, frames.Settings(announcement.slow_mode))
            return
        restricted = announcement.banned or announcement.until is not None
        self.rules.restricted(
            channel_id, account_id, Restriction(announcement.until) if restricted else None
        )
        self.hub.restrict(channel_id, account_id, announcement.until, announcement.banned)

    async def announce(self, announcement: Announcement) -> None:
        """Apply ``announcement`` here at once, then tell every other process.

        If the bus is down, the other processes pick the change up when their cache entries
        expire (30 s at most).
        """
        self.apply(announcement)
        try:
            await TOPIC.publish(self.bus, announcement)
        except BusUnavailable:
            log.warning("chat: moderation change not announced (bus unavailable)")

    async def publish(self, channel_id: int, frame: frames.Fanout) -> None:
        """Publish ``frame`` on the channel's topic, after the transaction that made it.

        If the bus refuses, a stored message still reaches this process's sockets: the room
        reads it back from the database (other processes find it at their next heartbeat).
        """
        try:
            await CHANNEL_TOPIC.publish(self.bus, ChatEvent(frame), channel_id)
        except BusUnavailable:
            log.warning("chat: %s frame of channel %d not published", frame.type, channel_id)
            if isinstance(frame, frames.Message):
                self.hub.poke(channel_id)

    async def close(self) -> None:
        """Close every socket (1012), stop writing and stop listening."""
        await self.hub.close()
        await self.writer.close()
        for task in self._listeners:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscription in self._subscriptions:
            subscription.close()
        self.rules.close()


async def start_chat(core: Core, stack: AsyncExitStack) -> Chat:
    """Build and start the chat component of this process; close it on shutdown."""
    chat = Chat(
        core=core,
        hub=Hub(core.db, core.bus, core.settings),
        rules=Rules(core.db),
        onair=OnAir(core.db),
        writer=MessageWriter(core.db),
    )
    await chat.start()
    stack.push_async_callback(chat.close)
    return chat


class HasChat(Protocol):
    """The part of the process's runtime the chat routes and sockets read."""

    chat: Chat


def chat_of(connection: HTTPConnection) -> Chat:
    """Return this process's chat component for a request or socket."""
    runtime: HasChat = connection.app.state.runtime
    return runtime.chat
