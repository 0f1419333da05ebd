"""Group commit for chat posts: posts queue up and are stored together, one transaction each
batch, so the database's cost does not grow with the posting rate.

On SQLite every statement is a round trip to the driver's thread through an event loop that is
also fanning messages out, and the write lock is held for the whole transaction: one transaction
per post would queue posts behind each other's round trips. Here one task per process writes
whatever has queued, each channel's messages taking their ids in queue order with one counter
update and one multi-row insert. A batch whose insert meets a replayed nonce is stored again one
post at a time, so each post gets its own answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.chat import messages
from stagecast.chat.errors import ServerRestarting
from stagecast.chat.messages import Draft, Message
from stagecast.db import Database, Kind

log = logging.getLogger(__name__)

MAX_BATCH = 200  # posts per transaction


@dataclass(frozen=True)
class _Post:
    channel_id: int
    draft: Draft
    done: asyncio.Future[tuple[Message, bool]]


class MessageWriter:
    """Store posts in batches; ``store`` returns once the post's batch committed."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: deque[_Post] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0

    async def store(self, channel_id: int, draft: Draft) -> tuple[Message, bool]:
        """Store ``draft``; return the message and whether it is new (False: a replayed nonce).

        Raises the errors of ``Database.run`` (for the whole batch), or ServerRestarting once
        the writer is closed. Cancelling the caller does not withdraw a queued post.
        """
        if self._closed:
            raise ServerRestarting("the server is restarting")
        done: asyncio.Future[tuple[Message, bool]] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(_Post(channel_id, draft, done))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="chat-writer")
        return await asyncio.shield(done)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
            await self._write(batch)

    async def _write(self, batch: list[_Post]) -> None:
        # A batch with a post that has no nonce may not be retried blindly.
        idempotent = all(post.draft.nonce is not None for post in batch)
        kind = Kind.IDEMPOTENT_WRITE if idempotent else Kind.WRITE
        try:
            stored = await self._db.run(
                lambda conn: _insert(conn, batch), kind=kind, name="chat_store"
            )
        except IntegrityError:
            await self._one_by_one(batch)
            return
        except Exception as exc:  # the database's errors reach every post of the batch
            for post in batch:
                if not post.done.done():
                    post.done.set_exception(exc)
            return
        self.batches += 1
        for post, message in zip(batch, stored, strict=True):
            if not post.done.done():
                post.done.set_result((message, True))

    async def _one_by_one(self, batch: list[_Post]) -> None:
        for post in batch:
            try:
                result = await messages.store(self._db, post.channel_id, post.draft)
            except Exception as exc:
                if not post.done.done():
                    post.done.set_exception(exc)
            else:
                if not post.done.done():
                    post.done.set_result(result)

    async def close(self) -> None:
        """Stop writing; posts still queued fail with ServerRestarting."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            post = self._queue.popleft()
            if not post.done.done():
                post.done.set_exception(ServerRestarting("the server is restarting"))


async def _insert(conn: AsyncConnection, batch: list[_Post]) -> list[Message]:
    """Insert every post of ``batch``, channel by channel; return them in batch order."""
    by_channel: dict[int, list[int]] = {}
    for index, post in enumerate(batch):
        by_channel.setdefault(post.channel_id, []).append(index)
    stored: list[Message | None] = [None] * len(batch)
    for channel_id, indexes in by_channel.items():
        drafts = [batch[i].draft for i in indexes]
        for index, message in zip(
            indexes, await messages.insert_messages(conn, channel_id, drafts), strict=True
        ):
            stored[index] = message
    return [message for message in stored if message is not None]
