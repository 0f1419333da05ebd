"""One live session held by this process: segments in, archive and playlists out.

Both ingest paths end here: the RTMP path through the packager, the HTTP push path directly.
For each whole segment the session assigns the next sequence number of its rendition, writes
the file once under a server-built name, archives its row, and appends it to the in-memory
playlist (also written to storage, so every process can serve it). Nothing downstream knows
which ingest path produced the segment.

Viewers of a session held here are served from memory: playlists rendered once per change
(``Rendered``: bytes and an ETag), init segments from ``Rendition.inits`` and the live window's
segments from the process's ``HotMedia``, bounded in bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from stagecast.bus import Bus
from stagecast.db import Database
from stagecast.db.schema import utcnow
from stagecast.errors import StagecastError
from stagecast.live import service
from stagecast.live.archiver import Archiver
from stagecast.live.bandwidth import BandwidthStats
from stagecast.live.fmp4 import InitInfo, MediaError, SegmentInfo, parse_init, parse_segment
from stagecast.live.hooks import ListedSegment, SegmentEvent, SessionHooks
from stagecast.live.hot import HotMedia, MediaKey
from stagecast.live.lowlatency import (
    LowLatencyPlaylist,
    PartEntry,
    Position,
    RenditionReport,
    part_uri,
)
from stagecast.live.parts import Cutter, HeldParts, Part, PartTarget, SegmentEnd
from stagecast.live.playlists import (
    Rendered,
    SegmentEntry,
    Variant,
    render_master,
)
from stagecast.live.service import InitRecord, SegmentRecord, SessionRow
from stagecast.live.sharing import EdgeShare, EdgeState
from stagecast.live.states import SessionState, StateChanged, announce_state
from stagecast.live.storage import SegmentStorage, media_path, session_path, session_prefix

log = logging.getLogger(__name__)

_SAVE_RENDITION_EVERY = 5
PARTS_PER_EPOCH = 10_000_000  # 38 days of 1/3 s parts; part file names allow 10 digits
_INIT_SHARE_SECONDS = 6 * 3600.0  # an init segment is named as long as its epoch's segments
_TOUCH_EVERY = 5.0  # seconds between refreshes of the session's last_media_at


@dataclass(frozen=True)
class LiveDeps:
    """What a session needs from the process (``hot`` is shared by all its sessions)."""

    db: Database
    storage: SegmentStorage
    hooks: SessionHooks
    bus: Bus
    window_segments: int
    segment_seconds: float
    hot: HotMedia[MediaKey] = field(default_factory=HotMedia)
    # Where the live edge is shared with the other nodes (None: one node, nothing to share).
    share: EdgeShare | None = None


@dataclass(frozen=True)
class _Slot:
    """A segment between its sequence number and its place in the playlist."""

    record: SegmentRecord
    entry: SegmentEntry
    info: SegmentInfo
    received: float  # perf_counter() when the segment arrived
    data: bytes  # the segment itself, served from memory while it is in the window


@dataclass
class Rendition:
    """Per-rendition state: playlist, bandwidth, current init, next sequence."""

    name: str
    playlist: LowLatencyPlaylist
    bandwidth: BandwidthStats = field(default_factory=BandwidthStats)
    init: InitInfo | None = None
    init_epoch: int = -1
    next_sequence: int = 0
    discontinuity_pending: bool = False
    anchor: tuple[datetime, float] | None = None  # (wall clock, media time) of the epoch start
    frame_rate: float | None = None
    since_saved: int = 0
    # The init segments the listed segments need, by epoch: served from memory.
    inits: dict[int, bytes] = field(default_factory=dict)
    # Segments whose files are written, waiting for an earlier one to be listed first.
    next_listed: int = 0
    settled: dict[int, _Slot | None] = field(default_factory=dict)
    # What this rendition holds in HotMedia, oldest first: (sequence, key).
    hot: deque[tuple[int, MediaKey]] = field(default_factory=deque)
    # LL-HLS: this epoch's fragments → parts and segments, the parts held, and the event set
    # (and replaced) at every change of the playlist, which held requests wait on.
    cutter: Cutter | None = None
    parts: HeldParts = field(default_factory=HeldParts)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """Wake every request waiting for this rendition's playlist to change."""
        self.changed.set()
        self.changed = asyncio.Event()


class LiveSession:
    """A session whose publisher is (or was just) connected to this process.

    No lock is held across I/O: a segment takes its sequence number and playlist entry at once,
    its file is written without holding anything, and it is listed when every earlier segment of
    its rendition is (so a slow write delays its successors in that rendition only). Rows go to
    the database behind the live edge, through the archiver.
    """

    def __init__(
        self,
        deps: LiveDeps,
        row: SessionRow,
        *,
        slug: str,
        dvr_seconds: float,
        epoch: int,
        next_sequences: dict[str, int],
        low_latency: bool = True,
    ) -> None:
        self.deps = deps
        self.low_latency = low_latency
        self.part_target: PartTarget | None = None  # fixed at the first part, for the session
        self.id = row.id
        self.channel_id = row.channel_id
        self.slug = slug
        self.title = row.title
        self.profile = row.profile
        self.state = row.state
        self.started_at = row.started_at
        self.reconnects = row.reconnects
        self.dvr_seconds = dvr_seconds
        self.epoch = epoch
        self.renditions: dict[str, Rendition] = {}
        self._next_sequences = dict(next_sequences)
        self._archiver = Archiver(deps.db, deps.storage, on_stored=self._stored)
        self._writing = 0  # media files being written now
        self._written = asyncio.Event()
        self._written.set()
        self.last_media = time.monotonic()
        self.segments_dropped = 0
        self.ended = False
        self._touched = 0.0
        self._ending: asyncio.Task[None] | None = None
        self._master: Rendered | None = None
        self._master_stale = True  # set wherever the master may change (see _share_master)
        # Set by the manager: called when the database says another process ended us.
        self.on_ended_elsewhere: Callable[[LiveSession], Coroutine[Any, Any, None]] | None = None

    # -- epochs -----------------------------------------------------------------------------

    def next_epoch(self) -> int:
        """Start a new epoch (a new publisher connection or packager run): a discontinuity."""
        self.epoch += 1
        for rendition in self.renditions.values():
            rendition.discontinuity_pending = rendition.next_sequence > 0
            rendition.anchor = None
            # A segment the last packager run left unfinished is never completed.
            rendition.cutter = None
            rendition.playlist.drop_open_parts()
            rendition.notify()
            self._share_state(rendition)
        return self.epoch

    def _rendition(self, name: str) -> Rendition:
        rendition = self.renditions.get(name)
        if rendition is None:
            playlist = LowLatencyPlaylist(
                window_segments=self.deps.window_segments,
                dvr_seconds=self.dvr_seconds,
                # RFC 8216 6.2.1: the target duration should not change; start at the target.
                min_target_duration=math.ceil(self.deps.segment_seconds),
                # A session resumed here (after a restart, or from a node that died) numbers
                # its parts past every part of its earlier epochs: their files are immutable.
                first_part=self.epoch * PARTS_PER_EPOCH,
            )
            bandwidth = BandwidthStats(min_peak_duration=self.deps.segment_seconds / 2)
            first = self._next_sequences.get(name, 0)
            rendition = Rendition(name, playlist, bandwidth, next_sequence=first, next_listed=first)
            rendition.discontinuity_pending = rendition.next_sequence > 0
            self.renditions[name] = rendition
        return rendition

    # -- media in ---------------------------------------------------------------------------

    async def add_init(self, name: str, data: bytes) -> None:
        """Take the init segment of ``name`` for the current epoch. Raises MediaError.

        The segments that follow are accepted once its file is written; its row is recorded
        in the background (before theirs), so a database stall at go-live stalls nothing.
        """
        info = parse_init(data)
        epoch = self.epoch
        path = media_path(self.channel_id, self.id, name, f"init-{epoch}.mp4")
        await self.deps.storage.write(path, data)
        rendition = self._rendition(name)
        if rendition.init_epoch != epoch and rendition.next_sequence > 0:
            rendition.discontinuity_pending = True
        rendition.init, rendition.init_epoch = info, epoch
        rendition.inits[epoch] = data
        self._share_media(name, f"init-{epoch}.mp4", data, _INIT_SHARE_SECONDS)
        self._forget_unlisted_inits(rendition)
        self._archiver.record_init(InitRecord(self.id, name, epoch, path, info.codecs))
        self._save_later(rendition)
        self._share_master()

    def init_data(self, name: str, epoch: int) -> bytes | None:
        """Return the init segment of ``name`` and ``epoch`` from memory, if it is still listed."""
        rendition = self.renditions.get(name)
        return rendition.inits.get(epoch) if rendition is not None else None

    def _forget_unlisted_inits(self, rendition: Rendition) -> None:
        """Keep only the inits of the current epoch and of the segments still listed."""
        keep = {rendition.init_epoch} | {
            _epoch_of(entry.map_uri) for entry in rendition.playlist.segments
        }
        for epoch in [e for e in rendition.inits if e not in keep]:
            del rendition.inits[epoch]

    async def add_segment(self, name: str, data: bytes) -> bool:
        """Take one whole media segment of ``name``; False if it was refused (logged, counted).

        Raises what storage raises (the segment is then left out of the playlist; its
        successors are not held up).
        """
        received = time.perf_counter()
        rendition = self.renditions.get(name)
        if self.ended or rendition is None or rendition.init is None:
            self.segments_dropped += 1
            return False
        try:
            info = parse_segment(data, rendition.init)
        except MediaError as exc:
            self.segments_dropped += 1
            rendition.playlist.drop_open_parts()  # their segment will never be listed
            log.warning("session %s dropped a %s segment: %s", self.id, name, exc)
            return False
        slot = self._reserve(rendition, data, info, received)
        self._writing += 1
        self._written.clear()
        try:
            await self.deps.storage.write(slot.record.path, data)  # once, before it is listed
        except BaseException:
            self._settle(rendition, slot.record.sequence, None)
            raise
        finally:
            self._writing -= 1
            if self._writing == 0:
                self._written.set()
        self._settle(rendition, slot.record.sequence, slot)
        return True

    async def add_fragment(self, name: str, data: bytes) -> None:
        """Take the next fMP4 fragment (``moof`` + ``mdat``) of ``name`` from the packager.

        Fragments are cut into parts (listed at once on a low-latency session) and segments
        (taken as ``add_segment`` takes them). A fragment that does not parse is dropped and
        logged. Raises what storage raises for a completed segment.
        """
        rendition = self.renditions.get(name)
        if self.ended or rendition is None or rendition.init is None:
            return
        try:
            info = parse_segment(data, rendition.init)
        except MediaError as exc:
            log.warning("session %s dropped a %s fragment: %s", self.id, name, exc)
            return
        if rendition.cutter is None:
            rendition.cutter = Cutter(
                self.part_target,
                self.deps.segment_seconds,
                has_video=rendition.init.video is not None,
            )
        for cut in rendition.cutter.push(data, info):
            await self._take_cut(rendition, cut)

    async def end_fragments(self, name: str) -> None:
        """Complete the segment being made of ``name`` (its packager output ended)."""
        rendition = self.renditions.get(name)
        if rendition is None or rendition.cutter is None:
            return
        for cut in rendition.cutter.finish():
            await self._take_cut(rendition, cut)
        rendition.cutter = None

    async def _take_cut(self, rendition: Rendition, cut: Part | SegmentEnd) -> None:
        if isinstance(cut, SegmentEnd):
            await self.add_segment(rendition.name, cut.data)
            return
        if self.part_target is None and rendition.cutter is not None:
            # Measured by the first epoch's cutter; later epochs' cutters are given it.
            self.part_target = rendition.cutter.target
        if self.low_latency and self.part_target is not None:
            self._list_part(rendition, cut, self.part_target)

    def _list_part(self, rendition: Rendition, part: Part, target: PartTarget) -> None:
        playlist = rendition.playlist
        playlist.set_part_target(target.seconds)
        number = playlist.next_part
        keep = 6.0 * playlist.target_duration  # listed for three, downloadable for three more
        rendition.parts.add(number, part, keep)
        self._share_media(rendition.name, part_uri(number), part.data, keep)
        playlist.add_part(
            PartEntry(number, part.duration, part.independent),
            map_uri=f"init-{rendition.init_epoch}.mp4",
            discontinuity=rendition.discontinuity_pending,
        )
        self.last_media = time.monotonic()
        self._report(rendition)

    def _report(self, changed: Rendition) -> None:
        """Wake ``changed``'s waiters and give the other renditions its new position."""
        changed.notify()
        self._share_state(changed)
        if len(self.renditions) < 2:
            return
        for rendition in self.renditions.values():
            if rendition is not changed:
                self._share_state(rendition)
            reports = []
            for other in self.renditions.values():
                if other is not rendition and other.playlist.low_latency:
                    msn, part = other.playlist.last_position()
                    reports.append(RenditionReport(f"../{other.name}/index.m3u8", msn, part))
            rendition.playlist.set_reports(reports)

    def part_data(self, name: str, number: int) -> bytes | None:
        """Return part ``number`` of ``name`` from memory, or None (unknown or forgotten)."""
        rendition = self.renditions.get(name)
        return rendition.parts.get(number) if rendition is not None else None

    async def wait_for(self, name: str, ready: Callable[[Position], bool]) -> bool:
        """Wait until ``ready(position)`` holds for ``name``, the session ends, or forever.

        Returns False if the rendition is unknown. The caller bounds the wait (a timeout).
        """
        rendition = self.renditions.get(name)
        if rendition is None:
            return False
        while not (self.ended or ready(rendition.playlist.position())):
            await rendition.changed.wait()
            rendition = self.renditions.get(name)
            if rendition is None:
                return False
        return True

    def _reserve(
        self, rendition: Rendition, data: bytes, info: SegmentInfo, received: float
    ) -> _Slot:
        """Give a segment its sequence number, file name and program date-time (no I/O)."""
        size = len(data)
        duration, start_time = info.duration, info.start_time
        sequence = rendition.next_sequence
        rendition.next_sequence += 1
        filename = f"seg-{sequence:08d}.m4s"
        path = media_path(self.channel_id, self.id, rendition.name, filename)
        if rendition.anchor is None:
            rendition.anchor = (utcnow() - timedelta(seconds=duration), start_time)
        wall, media = rendition.anchor
        pdt = wall + timedelta(seconds=start_time - media)
        discontinuity = rendition.discontinuity_pending
        rendition.discontinuity_pending = False
        epoch = rendition.init_epoch
        record = SegmentRecord(
            self.id, rendition.name, sequence, epoch, discontinuity, duration, size, pdt, path
        )
        entry = SegmentEntry(
            sequence, duration, filename, pdt, discontinuity, f"init-{epoch}.mp4", size
        )
        return _Slot(record, entry, info, received, data)

    def _settle(self, rendition: Rendition, sequence: int, slot: _Slot | None) -> None:
        """Mark a segment written (``slot``) or failed (None); list what is now in order."""
        rendition.settled[sequence] = slot
        while rendition.next_listed in rendition.settled:
            ready = rendition.settled.pop(rendition.next_listed)
            rendition.next_listed += 1
            if ready is not None:
                self._list(rendition, ready)

    def _list(self, rendition: Rendition, slot: _Slot) -> None:
        record, info = slot.record, slot.info
        rendition.playlist.append(slot.entry)
        self._hold(rendition, slot)
        self._share_media(rendition.name, slot.entry.uri, slot.data, self._segment_share_seconds)
        rendition.bandwidth.add(record.byte_size, record.duration)
        frames = info.video_frames
        if frames and record.duration > 0:
            rendition.frame_rate = round(frames / record.duration, 3)
        self.last_media = time.monotonic()
        # The live edge has moved; rows and the copies other processes serve follow behind.
        self._archive(record)
        self._share_playlist(rendition)
        self._report(rendition)
        rendition.since_saved += 1
        if len(rendition.playlist.segments) == 1 or rendition.since_saved >= _SAVE_RENDITION_EVERY:
            self._archiver.run(
                f"rendition:{rendition.name}", lambda: self._save_rendition(rendition)
            )
            self._share_master()
        self._observe(
            rendition,
            record,
            info.start_time,
            frames,
            info.starts_with_keyframe,
            time.perf_counter() - slot.received,
        )
        if self.deps.hooks.on_listed:
            self._hand_on(rendition, slot)

    def _hand_on(self, rendition: Rendition, slot: _Slot) -> None:
        init = rendition.inits.get(slot.record.epoch)
        if init is None:
            return
        listed = ListedSegment(
            self.id,
            self.channel_id,
            rendition.name,
            slot.record.epoch,
            slot.record.sequence,
            init,
            slot.data,
        )
        for observer in self.deps.hooks.on_listed:
            try:
                observer(listed)
            except Exception:  # an observer must never break ingest
                log.exception("listed-segment observer failed")

    def _hold(self, rendition: Rendition, slot: _Slot) -> None:
        """Serve the listed segment from memory; forget the ones that left the window."""
        hot = self.deps.hot
        key = (self.id, rendition.name, slot.entry.uri)
        hot.put(key, slot.data)
        rendition.hot.append((slot.entry.sequence, key))
        first = rendition.playlist.media_sequence
        while rendition.hot and rendition.hot[0][0] < first:
            hot.drop(rendition.hot.popleft()[1])

    def _release_hot(self) -> None:
        """Drop every segment of this session from memory (its viewers go to storage now)."""
        for rendition in self.renditions.values():
            while rendition.hot:
                self.deps.hot.drop(rendition.hot.popleft()[1])

    def media_data(self, name: str, filename: str) -> bytes | None:
        """Return an init or media segment of ``name`` from memory, or None (then: storage)."""
        if filename.startswith("init-"):
            return self.init_data(name, _epoch_of(filename))
        return self.deps.hot.get((self.id, name, filename))

    def _observe(
        self,
        rendition: Rendition,
        record: SegmentRecord,
        start_time: float,
        frames: int,
        keyframe: bool,
        work: float,
    ) -> None:
        event = SegmentEvent(
            self.id,
            self.channel_id,
            rendition.name,
            record.sequence,
            start_time,
            record.duration,
            record.byte_size,
            frames,
            keyframe,
            record.discontinuity,
            work,
        )
        for observer in self.deps.hooks.on_segment:
            try:
                observer(event)
            except Exception:  # an observer must never break ingest
                log.exception("segment observer failed")

    # -- archive ----------------------------------------------------------------------------

    def _archive(self, record: SegmentRecord) -> None:
        """Queue the segment's row; the first one (and one every few seconds) marks us live."""
        now = time.monotonic()
        touch = self.state == SessionState.IDLE or now - self._touched > _TOUCH_EVERY
        if touch:
            self._touched = now
        self._archiver.record(record, touch=touch)

    async def _stored(self, record: SegmentRecord, stored: bool) -> None:
        if not stored:
            if not self.ended and self.on_ended_elsewhere is not None:
                self.ended = True
                # Not awaited: it closes this session's archiver, whose task is running us.
                self._ending = asyncio.get_running_loop().create_task(self.on_ended_elsewhere(self))
            return
        if self.state == SessionState.IDLE:
            self.state = SessionState.LIVE
            self.started_at = self.started_at or record.program_date_time
            await self._announce(SessionState.LIVE)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait (bounded) until every queued row and file is written; True if all were."""
        return await self._archiver.flush(timeout)

    @property
    def rows_dropped(self) -> int:
        """Return how many segment rows were given up because too many waited (never inits)."""
        return self._archiver.dropped

    @property
    def unarchived(self) -> int:
        """Return how many segments wait for their database row."""
        return self._archiver.pending

    @property
    def unstored(self) -> int:
        """Return how many of this session's files wait in the spool for the media storage."""
        return self.deps.storage.pending(session_prefix(self.channel_id, self.id))

    # -- playlists --------------------------------------------------------------------------

    def playlist_text(self, name: str) -> str | None:
        """Return the current media playlist of ``name`` (from memory)."""
        rendition = self.renditions.get(name)
        return rendition.playlist.render() if rendition is not None else None

    def playlist(self, name: str, *, skip: bool = False) -> Rendered | None:
        """Return the media playlist of ``name`` as served (rendered once per change).

        ``skip``: the delta update (EXT-X-SKIP) of a low-latency playlist.
        """
        rendition = self.renditions.get(name)
        if rendition is None:
            return None
        return rendition.playlist.rendered_delta() if skip else rendition.playlist.rendered()

    def media_playlist(self, name: str) -> LowLatencyPlaylist | None:
        """Return the live playlist object of ``name`` (what blocking requests look at)."""
        rendition = self.renditions.get(name)
        return rendition.playlist if rendition is not None else None

    def master(self) -> Rendered | None:
        """Return the master playlist as served (None before any segment).

        Rendered again only after a change that may show in it (a rendition's init or first
        segment, every few segments for the bandwidths, the end): the points where the copy in
        storage is rewritten too.
        """
        if self._master_stale:
            text = self.master_text()
            self._master = Rendered.of(text) if text is not None else None
            self._master_stale = False
        return self._master

    def master_text(self) -> str | None:
        """Return the master playlist (None before any segment); URIs relative to /hls/<slug>/."""
        variants = [
            Variant(
                uri=f"s{self.id}/{r.name}/index.m3u8",
                bandwidth=max(r.bandwidth.peak, 1),
                average_bandwidth=r.bandwidth.average or None,
                codecs=r.init.codecs if r.init else "",
                resolution=(
                    (r.init.video.width, r.init.video.height)
                    if r.init and r.init.video and r.init.video.width and r.init.video.height
                    else None
                ),
                frame_rate=r.frame_rate,
                name=r.name,
            )
            for r in self.renditions.values()
            if r.init is not None and r.playlist.segments
        ]
        return render_master(variants) if variants else None

    @property
    def _segment_share_seconds(self) -> float:
        """How long other nodes may fetch a segment from the shared edge (then: storage)."""
        return 4.0 * self.deps.window_segments * self.deps.segment_seconds + 30.0

    def _share_media(self, name: str, filename: str, data: bytes, seconds: float) -> None:
        if self.deps.share is not None:
            self.deps.share.media(self.id, name, filename, data, seconds)

    def _share_state(self, rendition: Rendition) -> None:
        if self.deps.share is not None:
            self.deps.share.state(self.id, rendition.name, partial(self._edge_state, rendition))

    def _edge_state(self, rendition: Rendition) -> EdgeState | None:
        """Return the rendition's playlist as served here (None before there is one)."""
        playlist = rendition.playlist
        if not playlist.segments and not playlist.open_parts:
            return None
        master = self.master()
        return EdgeState(
            self.id,
            rendition.name,
            playlist.position(),
            playlist.rendered().text,
            playlist.rendered_delta().text if playlist.low_latency else None,
            master.text if master is not None else None,
        )

    def _share_playlist(self, rendition: Rendition) -> None:
        """Have the playlist copy other processes serve rewritten (latest text wins)."""
        path = media_path(self.channel_id, self.id, rendition.name, "index.m3u8")
        # Without parts: other processes serve this copy from storage, which has no parts.
        self._archiver.write_file(path, rendition.playlist.standard_text)

    def _share_master(self) -> None:
        self._master_stale = True
        self._archiver.write_file(
            session_path(self.channel_id, self.id, "master.m3u8"), self.master_text
        )

    def _save_later(self, rendition: Rendition) -> None:
        """Have the rendition's row (codecs, size, bandwidth) refreshed in the background."""
        self._archiver.run(f"rendition:{rendition.name}", partial(self._save_rendition, rendition))

    async def _save_rendition(self, rendition: Rendition) -> None:
        rendition.since_saved = 0
        init = rendition.init
        if init is None:
            return
        video = init.video
        try:
            await service.save_rendition(
                self.deps.db,
                session_id=self.id,
                name=rendition.name,
                codecs=init.codecs,
                width=video.width if video else None,
                height=video.height if video else None,
                frame_rate=rendition.frame_rate,
                bandwidth=rendition.bandwidth.peak,
                average_bandwidth=rendition.bandwidth.average,
            )
        except StagecastError as exc:  # informational; the next save catches up
            log.warning(
                "session %s: rendition %s not saved (%s)", self.id, rendition.name, exc.code
            )

    async def close_playlists(self) -> None:
        """Mark every playlist ended (EXT-X-ENDLIST), write everything out, stop the archiver.

        Segments whose files are being written are listed first (waited for, bounded).
        """
        self.ended = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10.0):
                await self._written.wait()
        for rendition in self.renditions.values():
            rendition.playlist.end()
            rendition.notify()  # every held request is answered now, with the ended playlist
            self._share_state(rendition)
            self._share_playlist(rendition)
            self._save_later(rendition)
        self._share_master()
        self._release_hot()
        for observer in self.deps.hooks.on_closed:
            try:
                observer(self.id)
            except Exception:
                log.exception("session-closed observer failed")
        await self._archiver.flush(10.0)
        await self._archiver.close()

    async def _announce(self, state: SessionState) -> None:
        with contextlib.suppress(StagecastError):
            changed = StateChanged(state, self.id, self.slug)
            await announce_state(self.deps.bus, changed, self.channel_id)


def _epoch_of(map_uri: str) -> int:
    """Return the epoch of an init segment's file name (``init-<epoch>.mp4``)."""
    return int(map_uri.removeprefix("init-").removesuffix(".mp4"))
