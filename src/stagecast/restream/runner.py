"""Push the live source stream of a channel to each of its enabled destinations.

The process that holds a live session sees each listed segment of its source rendition
(``SessionHooks.on_listed``: the bytes, no I/O on the live edge). For every enabled
destination of the channel a ``Push`` feeds them to its own ffmpeg (``-f mp4 -i pipe:0 -c copy
-f flv TARGET``: a copy, no transcode), through a small bounded queue: a destination that is slow
or gone loses its own oldest segments, never anyone else's, and never touches the live stream or
the recording. A push whose ffmpeg exits (refused, dropped) is started again with capped,
jittered backoff, from the current init segment; a new epoch (the encoder reconnected) starts a
new ffmpeg. When the session closes here, every push of it ends.

Each change of a push's state (connecting, live, retrying with the last error, stopped) and its
bytes sent go out on the typed topic ``restream.status``; every process keeps the latest per
destination for the API and the studio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field, replace
from enum import StrEnum

from stagecast.backoff import Backoff
from stagecast.bus import Bus, BusUnavailable, Gap, Subscription
from stagecast.bus.topics import Topic
from stagecast.db import Database
from stagecast.errors import StagecastError
from stagecast.live.hooks import ListedSegment
from stagecast.restream import service
from stagecast.restream.service import Destination
from stagecast.stats import StatsSource

log = logging.getLogger(__name__)

_QUEUE = 4  # segments a destination may be behind before its oldest are dropped
_BACKOFF_FIRST, _BACKOFF_CAP = 1.0, 30.0
_STOP_SECONDS = 5.0


class PushState(StrEnum):
    """Where a push to one destination is."""

    CONNECTING = "connecting"
    LIVE = "live"
    RETRYING = "retrying"
    STOPPED = "stopped"


@dataclass(frozen=True)
class PushStatus:
    """A destination's push, as the studio shows it."""

    destination_id: int
    channel_id: int
    session_id: int
    state: PushState
    last_error: str | None = None
    bytes_sent: int = 0
    attempts: int = 0


STATUS_TOPIC = Topic("restream.status", PushStatus)


@dataclass(frozen=True)
class RestreamChanged:
    """A channel's destinations changed (added, edited, removed)."""

    channel_id: int


CHANGED_TOPIC = Topic("restream.changed", RestreamChanged)


@dataclass
class _Media:
    epoch: int
    init: bytes
    data: bytes


class Push:
    """One destination of one live session: its ffmpeg, started again whenever it stops."""

    def __init__(
        self, destination: Destination, session_id: int, ffmpeg: str, report: _Report
    ) -> None:
        self.destination = destination
        self._ffmpeg = ffmpeg
        self._report = report
        self._queue: deque[_Media] = deque(maxlen=_QUEUE)
        self._ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False
        self.dropped = 0
        self.status = PushStatus(
            destination.id, destination.channel_id, session_id, PushState.CONNECTING
        )
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"restream-{destination.id}"
        )

    def offer(self, media: _Media) -> None:
        """Queue a segment (the oldest waiting one is dropped past the bound)."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(media)
        self._ready.set()

    async def stop(self) -> None:
        """End the push: its ffmpeg gets the end of its input and a few seconds to flush."""
        self._stopping = True
        self._ready.set()
        self._stopped.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_STOP_SECONDS + 1):
                await asyncio.shield(self._task)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _set(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]
        self._report(self.status)

    async def _run(self) -> None:
        backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_CAP)
        while not self._stopping:
            self._set(state=PushState.CONNECTING, attempts=self.status.attempts + 1)
            error = await self._one_ffmpeg(backoff)
            if self._stopping:
                break
            if error is None:
                continue  # a new epoch: a new ffmpeg at once
            self._set(state=PushState.RETRYING, last_error=error)
            log.info("restream to %s: %s; retrying", self.destination.name, error)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next_delay()):
                    await self._stopped.wait()  # cut short only by stop()
        self._set(state=PushState.STOPPED)

    async def _one_ffmpeg(self, backoff: Backoff) -> str | None:
        """Run one ffmpeg until it exits, a new epoch begins or the push stops; return why it
        failed (None: it did not)."""
        process = await asyncio.create_subprocess_exec(
            self._ffmpeg,
            *("-hide_banner", "-nostdin", "-loglevel", "error"),
            *("-probesize", "1000000", "-analyzeduration", "0"),
            *("-f", "mp4", "-i", "pipe:0", "-map", "0", "-c", "copy"),
            *("-f", "flv", self.destination.target),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stderr is not None
        errors = asyncio.get_running_loop().create_task(process.stderr.read())
        exited = asyncio.get_running_loop().create_task(process.wait())
        epoch: int | None = None
        sent = 0
        new_epoch = False
        try:
            while not self._stopping:
                if not self._queue:
                    self._ready.clear()
                    waiting = asyncio.get_running_loop().create_task(self._ready.wait())
                    done, _ = await asyncio.wait({waiting, exited}, return_when="FIRST_COMPLETED")
                    if exited in done:
                        waiting.cancel()
                        break
                    continue
                media = self._queue.popleft()
                if epoch is not None and media.epoch != epoch:
                    self._queue.appendleft(media)  # a new epoch: a new ffmpeg, from its init
                    new_epoch = True
                    break
                if epoch is None:
                    process.stdin.write(media.init)
                    epoch = media.epoch
                process.stdin.write(media.data)
                await process.stdin.drain()
                sent += 1
                self._set(bytes_sent=self.status.bytes_sent + len(media.data))
                if sent == 2 and self.status.state != PushState.LIVE:
                    backoff.reset()
                    self._set(state=PushState.LIVE, last_error=None)
        except (BrokenPipeError, ConnectionResetError):
            pass  # ffmpeg went away: its stderr says why
        finally:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_SECONDS):
                    await exited
            if process.returncode is None:
                process.kill()
                await process.wait()
        tail = (await errors).decode(errors="replace").strip().splitlines()
        if self._stopping or (new_epoch and process.returncode == 0):
            return None
        return (tail[-1] if tail else f"ffmpeg exited with {process.returncode}")[:300]


class _Report:
    """Publish a push's status on the bus (best effort: the API shows the last one it got)."""

    def __init__(self, bus: Bus, statuses: dict[int, PushStatus]) -> None:
        self._bus = bus
        self._statuses = statuses
        self._pending: dict[int, PushStatus] = {}
        self._task: asyncio.Task[None] | None = None

    def __call__(self, status: PushStatus) -> None:
        self._statuses[status.destination_id] = status
        self._pending[status.destination_id] = status
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            pending, self._pending = self._pending, {}
            with contextlib.suppress(BusUnavailable):
                name = STATUS_TOPIC.name()
                await self._bus.publish_many(
                    [(name, STATUS_TOPIC.encode(status)) for status in pending.values()]
                )


@dataclass
class _Session:
    channel_id: int
    rendition: str | None = None
    pushes: dict[int, Push] = field(default_factory=dict)
    loading: asyncio.Task[None] | None = None


class Restreamer:
    """This process's pushes, per live session it holds (see the module)."""

    def __init__(self, db: Database, bus: Bus, ffmpeg: str) -> None:
        self._db = db
        self._bus = bus
        self._ffmpeg = ffmpeg
        self._sessions: dict[int, _Session] = {}
        self.statuses: dict[int, PushStatus] = {}  # latest per destination, from every process
        self._report = _Report(bus, self.statuses)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Follow statuses and destination changes on the bus."""
        statuses = await STATUS_TOPIC.subscribe(self._bus, maxsize=1024)
        changes = await CHANGED_TOPIC.subscribe(self._bus, maxsize=256)
        self._tasks = [
            asyncio.create_task(self._follow_statuses(statuses), name="restream-status"),
            asyncio.create_task(self._follow_changes(changes), name="restream-changes"),
        ]

    async def close(self) -> None:
        """Stop every push and the followers."""
        for session_id in list(self._sessions):
            await self._end(session_id)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- hooks (on the live edge: no I/O) -------------------------------------------------------

    def listed(self, listed: ListedSegment) -> None:
        """Hand a just-listed segment of the source rendition to the session's pushes."""
        session = self._sessions.get(listed.session_id)
        if session is None:
            session = self._sessions[listed.session_id] = _Session(listed.channel_id)
            session.loading = asyncio.get_running_loop().create_task(
                self._load(listed.session_id, session)
            )
        if session.rendition is None or (listed.rendition == "source" != session.rendition):
            session.rendition = listed.rendition  # the source: the first, or the one so named
        if listed.rendition != session.rendition:
            return
        media = _Media(listed.epoch, listed.init, listed.data)
        for push in session.pushes.values():
            push.offer(media)

    def closed(self, session_id: int) -> None:
        """The session closed here: end its pushes (in the background)."""
        if session_id in self._sessions:
            asyncio.get_running_loop().create_task(self._end(session_id))

    # -- background ---------------------------------------------------------------------------

    async def _load(self, session_id: int, session: _Session) -> None:
        try:
            found = await service.list_destinations(self._db, session.channel_id)
        except StagecastError as exc:
            log.warning("restream: destinations of session %s not read (%s)", session_id, exc.code)
            return
        if self._sessions.get(session_id) is not session:
            return
        wanted = {d.id: d for d in found if d.enabled}
        for destination_id in [i for i in session.pushes if i not in wanted]:
            await session.pushes.pop(destination_id).stop()
        for destination_id, destination in wanted.items():
            push = session.pushes.get(destination_id)
            if push is not None and push.destination == destination:
                continue
            if push is not None:
                await push.stop()
            session.pushes[destination_id] = Push(
                destination, session_id, self._ffmpeg, self._report
            )

    async def _end(self, session_id: int) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        if session.loading is not None and not session.loading.done():
            session.loading.cancel()
        await asyncio.gather(*(push.stop() for push in session.pushes.values()))

    async def _follow_statuses(self, subscription: Subscription) -> None:
        async with subscription:
            while True:
                item = await subscription.get()
                if item is None or isinstance(item, Gap):
                    continue
                with contextlib.suppress(ValueError):
                    status = STATUS_TOPIC.decode(item)
                    self.statuses[status.destination_id] = status

    async def _follow_changes(self, subscription: Subscription) -> None:
        async with subscription:
            while True:
                item = await subscription.get()
                if item is None or isinstance(item, Gap):
                    continue
                try:
                    changed = CHANGED_TOPIC.decode(item)
                except ValueError:
                    continue
                for session_id, session in list(self._sessions.items()):
                    if session.channel_id == changed.channel_id:
                        await self._load(session_id, session)

    def stats(self) -> StatsSource:
        """The pushes of this process, for ``/metrics``."""

        def read() -> dict[str, float]:
            pushes = [p for s in self._sessions.values() for p in s.pushes.values()]
            return {
                "pushing": sum(p.status.state == PushState.LIVE for p in pushes),
                "retrying": sum(p.status.state == PushState.RETRYING for p in pushes),
                "bytes_sent": sum(p.status.bytes_sent for p in pushes),
                "segments_dropped": sum(p.dropped for p in pushes),
            }

        return StatsSource(
            "restream",
            read,
            gauges=frozenset({"pushing", "retrying", "bytes_sent", "segments_dropped"}),
            help={
                "pushing": "Restream destinations receiving the live stream now",
                "retrying": "Restream destinations waiting to be tried again",
                "bytes_sent": "Bytes pushed to the restream destinations of the live sessions",
                "segments_dropped": "Segments a slow destination's queue dropped",
            },
        )
