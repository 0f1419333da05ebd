"""The live sessions of this process: accept publishers, hold grace windows, end sessions.

``acquire`` gives a publisher its session (new, or the same one on a reconnect within the
grace window); ``release`` starts the grace window; ``end`` ends a session for good. A sweep
ends sessions whose grace ran out, including those of processes that died, cuts off publishers
whose stream key was rotated (also when the rotation's announcement was lost), and start-up
puts this node's orphaned sessions back into ``reconnecting`` so an encoder that retries
continues the same session.

The transitions of one channel (acquire, release) are serialised by that channel's lock, which
is held across that channel's database transition only: a slow channel never holds up another,
and no lock is held while a session's files or rows are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stagecast.backoff import Backoff
from stagecast.bus import Bus, Gap, Subscription
from stagecast.channels import service as channels
from stagecast.channels.service import KEY_ROTATED_TOPIC, KeyMatch, KeyRotated
from stagecast.config import Settings
from stagecast.db import Database
from stagecast.errors import StagecastError
from stagecast.live import service
from stagecast.live.hooks import SessionHooks
from stagecast.live.hot import HotMedia
from stagecast.live.nodes import Nodes
from stagecast.live.playlists import SegmentEntry
from stagecast.live.service import AlreadyLive
from stagecast.live.session import LiveDeps, LiveSession
from stagecast.live.sharing import EdgeShare
from stagecast.live.states import ACTIVE, SessionState, StateChanged, announce_state
from stagecast.live.storage import SegmentStorage, StorageError, session_prefix

log = logging.getLogger(__name__)

Kick = Callable[[str], Awaitable[None]]
_SWEEP_EVERY = 5.0
_BACKOFF_FIRST, _BACKOFF_CAP = 0.5, 5.0
_NUMBERED = re.compile(r"^(init|seg)-(\d{1,10})\.(?:mp4|m4s)$")


@dataclass
class _Held:
    session: LiveSession
    key_version: int
    kick: Kick | None = None
    grace: asyncio.Task[None] | None = None
    ending: bool = False


def node_name(settings: Settings) -> str:
    """Return this process's stable name (host and HTTP port), used to own sessions."""
    name = settings.node_name or f"{socket.gethostname()}:{settings.port}"
    # The workers of ``serve --workers`` after the first are nodes of their own: none of them
    # must take the primary's sessions for its own orphans when it starts.
    return f"{name}/w{settings.worker_index}" if settings.worker_index else name


class LiveManager:
    """Owns the sessions whose publishers connect to this process."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: Bus,
        storage: SegmentStorage,
        hooks: SessionHooks,
        nodes: Nodes | None = None,
        share: EdgeShare | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.hooks = hooks
        self.node = node_name(settings)
        self.nodes = nodes or Nodes(self.node, None)
        self.deps = LiveDeps(
            db,
            storage,
            hooks,
            bus,
            settings.live_window_segments,
            settings.segment_seconds,
            HotMedia(settings.hot_media_bytes),
            share,
        )
        self._held: dict[int, _Held] = {}  # by channel id
        self._locks: dict[int, asyncio.Lock] = {}  # by channel id, while it has a session here
        self._tasks: list[asyncio.Task[None]] = []
        self._rows_dropped_closed = 0  # by sessions no longer held

    @property
    def archive_rows_dropped(self) -> int:
        """Return how many segment rows this process gave up waiting for the database."""
        return self._rows_dropped_closed + sum(h.session.rows_dropped for h in self._held.values())

    @property
    def archive_rows_waiting(self) -> int:
        """Return how many rows of the sessions held here wait for the database now."""
        return sum(h.session.unarchived for h in self._held.values())

    def _lock(self, channel_id: int) -> asyncio.Lock:
        """Return the lock that orders ``channel_id``'s transitions (created on first use)."""
        return self._locks.setdefault(channel_id, asyncio.Lock())

    def _forget_lock(self, channel_id: int) -> None:
        lock = self._locks.get(channel_id)
        if lock is not None and not lock.locked() and channel_id not in self._held:
            del self._locks[channel_id]

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background work: beat, reconcile orphans, sweep expired sessions and the
        sessions of dead nodes, watch keys.

        Nothing here needs the database to be up: reconciliation retries in the background.
        """
        await self.nodes.start()
        rotations = await KEY_ROTATED_TOPIC.subscribe(self.bus, maxsize=256)
        self._tasks = [
            asyncio.create_task(self._sweep_forever(), name="live-sweep"),
            asyncio.create_task(self._watch_rotations(rotations), name="live-keys"),
        ]

    async def reconcile(self) -> int:
        """Put this node's sessions orphaned by a restart into ``reconnecting``; return count."""
        moved = 0
        for session_id in await service.orphaned_sessions(self.db, self.node):
            if session_id in {h.session.id for h in self._held.values()}:
                continue
            if await service.disconnect(self.db, session_id, self.node):
                moved += 1
                log.info(
                    "session %s was live when this process stopped; waiting for the encoder",
                    session_id,
                )
        return moved

    async def close(self) -> None:
        """Disconnect every publisher; their sessions wait in ``reconnecting`` for a restart."""
        await self.nodes.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for held in list(self._held.values()):
            if held.grace is not None:
                held.grace.cancel()
            if held.kick is not None:
                with contextlib.suppress(Exception):
                    await held.kick("server shutting down")
        self._held.clear()

    # -- publishers -------------------------------------------------------------------------

    def local(self, channel_id: int) -> LiveSession | None:
        """Return the session of ``channel_id`` this process holds, if any."""
        held = self._held.get(channel_id)
        return held.session if held is not None else None

    def sessions(self) -> list[LiveSession]:
        """Return every session this process holds."""
        return [h.session for h in self._held.values()]

    async def acquire(self, match: KeyMatch, kick: Kick) -> LiveSession:
        """Give a publisher with a verified key its session. Raises AlreadyLive."""
        try:
            async with self._lock(match.channel_id):
                session = await self._acquire(match, kick)
        finally:
            self._forget_lock(match.channel_id)
        live = session.state == SessionState.LIVE
        await self._announce(session, SessionState.LIVE if live else SessionState.IDLE)
        return session

    async def _acquire(self, match: KeyMatch, kick: Kick) -> LiveSession:
        held = self._held.get(match.channel_id)
        if held is not None and held.kick is not None:
            raise AlreadyLive("the channel is already live")
        try:
            row = await self._open(match)
        except AlreadyLive:
            # Its owner may have died with the encoder connected: then the session waits for
            # it (reconnecting) and this publisher, the encoder come back, continues it here.
            if not await self._release_dead(channel_id=match.channel_id):
                raise
            row = await self._open(match)
        if held is not None and held.session.id == row.id:
            if held.grace is not None:
                held.grace.cancel()
                held.grace = None
            held.kick, held.key_version = kick, match.key_version
            held.session.next_epoch()
            held.session.reconnects = row.reconnects
            held.session.state = row.state
            return held.session
        session = await self._load(row, match)
        self._held[match.channel_id] = _Held(session, match.key_version, kick)
        return session

    async def _open(self, match: KeyMatch) -> service.SessionRow:
        return await service.open_session(
            self.db,
            channel_id=match.channel_id,
            title=match.title,
            profile=match.profile,
            key_version=match.key_version,
            node=self.node,
        )

    async def _release_dead(self, *, channel_id: int | None = None) -> int:
        """Put the publishing sessions of dead nodes into ``reconnecting``; return how many.

        Their grace window starts now: the encoder may continue on any node, or the sweep
        ends them after it.
        """
        if not self.nodes.shared:
            return 0
        owned = [
            (sid, owner)
            for sid, owner in await service.owners(self.db, channel_id=channel_id)
            if owner != self.node
        ]
        alive = await self.nodes.alive(owner for _, owner in owned)
        moved = 0
        for session_id, owner in owned:
            if owner in alive:
                continue
            if await service.disconnect(self.db, session_id, owner):
                moved += 1
                log.warning(
                    "session %s: its node %s is gone; waiting for the encoder", session_id, owner
                )
        return moved

    async def _load(self, row: service.SessionRow, match: KeyMatch) -> LiveSession:
        """Build the in-memory session; a resumed one continues its sequences and playlists."""
        epoch, next_sequences = 0, dict[str, int]()
        if row.resumed:
            epoch, next_sequences = await service.resume_point(self.db, row.id)
            epoch, next_sequences = await self._past_stored(row, epoch, next_sequences)
            epoch += 1
        session = LiveSession(
            self.deps,
            row,
            slug=match.slug,
            dvr_seconds=float(match.dvr_window_seconds),
            epoch=epoch,
            next_sequences=next_sequences,
            low_latency=match.latency == "low",
        )
        if row.resumed:
            await self._refill(session, next_sequences)
        session.on_ended_elsewhere = self._ended_elsewhere
        return session

    async def _past_stored(
        self, row: service.SessionRow, epoch: int, next_sequences: dict[str, int]
    ) -> tuple[int, dict[str, int]]:
        """Move the resume point past every file stored for the session, rows or not.

        A node that died may have stored files whose rows it never wrote: their names are
        never used again (storage is create-only), so the session continues after them.
        """
        try:
            stored = await self.deps.storage.sizes(session_prefix(row.channel_id, row.id))
        except (StagecastError, StorageError) as exc:
            log.warning("session %s: stored files not listed (%s)", row.id, exc)
            return epoch, next_sequences
        sequences = dict(next_sequences)
        for path in stored:
            parts = path.split("/")
            if len(parts) != 4:
                continue
            found = _NUMBERED.fullmatch(parts[3])
            if found is None:
                continue
            number = int(found.group(2))
            if found.group(1) == "init":
                epoch = max(epoch, number)
            else:
                sequences[parts[2]] = max(sequences.get(parts[2], 0), number + 1)
        return epoch, sequences

    async def _ended_elsewhere(self, session: LiveSession) -> None:
        """Another process (or the owner through it) ended our session: let the publisher go."""
        held = self._held.get(session.channel_id)
        if held is None or held.session is not session:
            return
        del self._held[session.channel_id]
        self._rows_dropped_closed += session.rows_dropped
        if held.grace is not None:
            held.grace.cancel()
        if held.kick is not None:
            with contextlib.suppress(Exception):
                await held.kick("the session was ended")
        session.state = SessionState.ENDED
        await session.close_playlists()

    async def _refill(self, session: LiveSession, next_sequences: dict[str, int]) -> None:
        """Put the last archived segments back into the playlists of a resumed session."""
        keep = max(self.settings.live_window_segments, 1)
        for name in next_sequences:
            rendition = session._rendition(name)
            for record, init_path in await service.recent_segments(self.db, session.id, name, keep):
                rendition.playlist.append(
                    SegmentEntry(
                        record.sequence,
                        record.duration,
                        record.path.rsplit("/", 1)[-1],
                        record.program_date_time,
                        record.discontinuity,
                        init_path.rsplit("/", 1)[-1],
                        record.byte_size,
                    )
                )
            rendition.discontinuity_pending = True

    async def release(self, session: LiveSession, reason: str) -> None:
        """The publisher left: mark the session ``reconnecting`` and start its grace window.

        If the database cannot take the change now, the grace window starts anyway and the
        change is retried in the background before the window can end the session.
        """
        held = self._held.get(session.channel_id)
        if held is None or held.session is not session or held.ending:
            return
        held.kick = None
        await session.flush(timeout=2.0)  # not under the lock: it waits on the database
        try:
            async with self._lock(session.channel_id):
                started = await self._start_grace(session)
        finally:
            self._forget_lock(session.channel_id)
        if started is None:
            # Ended, or taken over by another node, while the publisher was here: let it go.
            await self._ended_elsewhere(session)
        elif started:
            log.info("session %s: publisher gone (%s); waiting %.0f s for it", session.id,
                     reason, self.settings.reconnect_grace_seconds)  # fmt: skip
            await self._announce(session, SessionState.RECONNECTING)

    async def _start_grace(self, session: LiveSession) -> bool | None:
        """Start the grace window; False if there is none to start, None if the session is
        no longer this node's to hold."""
        held = self._held.get(session.channel_id)
        if held is None or held.session is not session or held.ending or held.kick is not None:
            return False  # ended meanwhile, or its publisher is already back
        try:
            recorded: bool | None = await service.disconnect(self.db, session.id, self.node)
        except StagecastError as exc:
            log.warning("session %s: reconnecting not recorded yet (%s)", session.id, exc.code)
            recorded = None
        if recorded is False:
            return None
        session.state = SessionState.RECONNECTING
        held.grace = asyncio.create_task(
            self._grace(session, recorded=bool(recorded)), name=f"grace-{session.id}"
        )
        return True

    async def _grace(self, session: LiveSession, *, recorded: bool) -> None:
        started = asyncio.get_running_loop().time()
        backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_CAP)
        while not recorded:
            await asyncio.sleep(backoff.next_delay())
            try:
                recorded = await service.disconnect(self.db, session.id, self.node)
            except StagecastError:
                continue
            if not recorded:
                await self._ended_elsewhere(session)
                return
        elapsed = asyncio.get_running_loop().time() - started
        await asyncio.sleep(max(0.0, self.settings.reconnect_grace_seconds - elapsed))
        await self.end(
            session.channel_id,
            "publisher did not come back",
            states=frozenset({SessionState.RECONNECTING}),
        )

    async def end(
        self,
        channel_id: int,
        reason: str,
        *,
        states: frozenset[SessionState] = ACTIVE,
    ) -> bool:
        """End the channel's session held here (kicking its publisher). False if none ended."""
        held = self._held.get(channel_id)
        if held is None:
            return False
        held.ending = True
        if held.kick is not None:
            kick, held.kick = held.kick, None
            with contextlib.suppress(Exception):
                await kick(reason)
        session = held.session
        await session.flush()
        ended = await service.end_session(self.db, session.id, reason, self.hooks, states=states)
        if ended is None:
            held.ending = False
            return False
        if self._held.get(channel_id) is held:
            del self._held[channel_id]
            self._rows_dropped_closed += session.rows_dropped
        if held.grace is not None and held.grace is not asyncio.current_task():
            held.grace.cancel()
        session.state = SessionState.ENDED
        await session.close_playlists()
        log.info("session %s ended: %s", session.id, reason)
        await self._announce(session, SessionState.ENDED)
        return True

    async def end_remote(
        self, session_id: int, reason: str, states: frozenset[SessionState]
    ) -> bool:
        """End a session no process holds (its owner died); runs the same hooks."""
        ended = await service.end_session(self.db, session_id, reason, self.hooks, states=states)
        if ended is not None:
            with contextlib.suppress(StagecastError):
                changed = StateChanged(SessionState.ENDED, session_id)
                await announce_state(self.bus, changed, ended.channel_id)
        return ended is not None

    # -- background -------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        reconciled = False
        while True:
            try:
                if not reconciled:
                    await self.reconcile()
                    reconciled = True
                await self._release_dead()
                await self.sweep()
                await self.check_keys()
            except StagecastError as exc:
                log.warning("live sweep skipped: %s", exc.code)
            await asyncio.sleep(_SWEEP_EVERY)

    async def sweep(self) -> int:
        """End sessions whose grace window passed or whose publisher went silent; return count."""
        grace = self.settings.reconnect_grace_seconds
        stale_after = grace + max(60.0, 10 * self.settings.segment_seconds)
        local_ids = {h.session.id for h in self._held.values()}
        ended = 0
        for session_id, state in await service.expired_sessions(
            self.db, grace=grace + 1.0, stale_after=stale_after
        ):
            if session_id in local_ids:
                continue  # our own grace timers and publishers handle these
            reconnecting = state == SessionState.RECONNECTING
            reason = "publisher did not come back" if reconnecting else "stale"
            ended += await self.end_remote(session_id, reason, frozenset({state}))
        return ended

    async def check_keys(self) -> int:
        """Cut off publishers whose stream key was rotated or revoked; return how many.

        The rotation's announcement on the bus does this at once; this check (every sweep)
        catches rotations whose announcement was lost, or made where there is no bus (the CLI),
        and keys that open nothing any more (channel deleted, owner demoted to viewer).
        """
        publishing = [cid for cid, held in self._held.items() if held.kick is not None]
        if not publishing:
            return 0
        kicked = 0
        versions = await channels.key_versions(self.db, publishing)
        for channel_id, version in versions.items():
            kicked += await self._rotated(KeyRotated(channel_id, version))
        for channel_id in set(publishing) - versions.keys():
            # The key opens nothing any more: the channel is gone, or its owner was demoted.
            held = self._held.get(channel_id)
            if held is None or held.kick is None:
                continue
            log.info("session %s: the stream key was revoked; disconnecting", held.session.id)
            kick, held.kick = held.kick, None
            with contextlib.suppress(Exception):
                await kick("stream key revoked")
            kicked += 1
        return kicked

    async def _watch_rotations(self, subscription: Subscription) -> None:
        async with subscription:
            while True:
                item = await subscription.get()
                if item is None or isinstance(item, Gap):
                    continue  # a lost announcement is caught by check_keys
                try:
                    rotated = KEY_ROTATED_TOPIC.decode(item)
                except ValueError:
                    log.warning("ignoring a malformed key rotation message: %r", item)
                    continue
                await self._rotated(rotated)

    async def _rotated(self, rotated: KeyRotated) -> bool:
        held = self._held.get(rotated.channel_id)
        if held is None or held.kick is None or held.key_version >= rotated.key_version:
            return False
        log.info("session %s: stream key rotated; disconnecting the publisher", held.session.id)
        kick, held.kick = held.kick, None
        with contextlib.suppress(Exception):
            await kick("stream key rotated")
        return True

    async def _announce(self, session: LiveSession, state: SessionState) -> None:
        with contextlib.suppress(StagecastError):
            changed = StateChanged(state, session.id, session.slug)
            await announce_state(self.bus, changed, session.channel_id)
