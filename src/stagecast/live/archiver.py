"""Archive a live session off its critical path: init and segment rows, playlists, renditions.

The live edge only waits for the media file (written once, before anything lists it). The
session's rows and the playlist copies other processes serve are written by one task per
session, in order (an epoch's init row before its segments' rows), retried with backoff while
the database is unavailable: a PostgreSQL restart or a locked table, at go-live or mid-stream,
neither stalls the stream nor loses anything from the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from stagecast.backoff import Backoff
from stagecast.db import Database
from stagecast.errors import StagecastError
from stagecast.live import service
from stagecast.live.service import InitRecord, SegmentRecord
from stagecast.live.storage import SegmentStorage, StorageError

log = logging.getLogger(__name__)

_RECORD_DEADLINE = 2.0  # seconds per try; the loop tries again after a backoff
_BACKOFF_FIRST, _BACKOFF_CAP = 0.5, 5.0
_RECORDS_LIMIT = 20_000  # ~11 hours of one 2 s rendition waiting for the database

Stored = Callable[[SegmentRecord, bool], Awaitable[None]]
Job = Callable[[], Awaitable[None]]
# A queued row: an epoch's init, or a segment (with whether it refreshes the session's liveness).
_Row = tuple[InitRecord, None] | tuple[SegmentRecord, bool]


class Archiver:
    """One session's background writer: rows first, then files and side jobs (latest wins)."""

    def __init__(self, db: Database, storage: SegmentStorage, *, on_stored: Stored) -> None:
        self._db = db
        self._storage = storage
        self._on_stored = on_stored
        self._records: deque[_Row] = deque()
        self._files: dict[str, Callable[[], str | None]] = {}
        self._jobs: dict[str, Job] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Return how many rows (segments and inits) wait to be written."""
        return len(self._records)

    def record(self, record: SegmentRecord, *, touch: bool) -> None:
        """Queue a segment row (``touch`` also refreshes the session's liveness).

        Past the queue's limit the oldest segment row is given up (counted in ``dropped``);
        init rows are never given up, since every segment row of their epoch needs them.
        """
        if len(self._records) >= _RECORDS_LIMIT:
            self._drop_oldest_segment()
        self._records.append((record, touch))
        self._kick()

    def record_init(self, record: InitRecord) -> None:
        """Queue an epoch's init row; it is written before the segment rows queued after it."""
        self._records.append((record, None))
        self._kick()

    def _drop_oldest_segment(self) -> None:
        for index, (row, _) in enumerate(self._records):
            if isinstance(row, SegmentRecord):
                del self._records[index]
                self.dropped += 1
                return

    def write_file(self, path: str, render: Callable[[], str | None]) -> None:
        """Write ``render()`` to ``path`` soon; a later call for the same path replaces it."""
        self._files[path] = render
        self._kick()

    def run(self, key: str, job: Job) -> None:
        """Run ``job`` soon; a later job with the same key replaces it."""
        self._jobs[key] = job
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="archiver")

    async def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until everything queued is written; True if it was."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the task (whatever is still queued is abandoned: flush first)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._write_records()
            await self._write_files()
            await self._run_jobs()
            if not (self._records or self._files or self._jobs):
                self._idle.set()

    async def _write_records(self) -> None:
        backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_CAP)
        while self._records:
            row, touch = self._records[0]
            started = time.monotonic()
            try:
                stored = await self._write_row(row, touch)
            except StagecastError as exc:
                log.warning("session %s: %s not archived yet (%s); retrying", row.session_id,
                            _describe(row), exc.code)  # fmt: skip
                backoff.fail(started)  # the failed try's own time counts towards the wait
                await asyncio.sleep(backoff.remaining())
                continue
            backoff.reset()
            self._records.popleft()
            if isinstance(row, SegmentRecord):
                await self._on_stored(row, stored)

    async def _write_row(self, row: InitRecord | SegmentRecord, touch: bool | None) -> bool:
        if isinstance(row, InitRecord):
            await service.record_init(self._db, row, deadline=_RECORD_DEADLINE)
            return True
        return await service.record_segment(
            self._db, row, touch=bool(touch), deadline=_RECORD_DEADLINE
        )

    async def _write_files(self) -> None:
        while self._files:
            path = next(iter(self._files))
            text = self._files.pop(path)()
            if text is None:
                continue
            try:
                await self._storage.replace(path, text.encode())
            except (OSError, StorageError) as exc:
                log.warning("could not write %s: %s", path, exc)

    async def _run_jobs(self) -> None:
        while self._jobs:
            key = next(iter(self._jobs))
            job = self._jobs.pop(key)
            try:
                await job()
            except StagecastError as exc:  # informational rows: the next job catches up
                log.warning("archiver job %s skipped: %s", key, exc.code)


def _describe(row: InitRecord | SegmentRecord) -> str:
    if isinstance(row, InitRecord):
        return f"init {row.rendition}/epoch {row.epoch}"
    return f"segment {row.rendition}/{row.sequence}"
