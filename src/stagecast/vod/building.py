"""Build a VOD once from its session's archive: playlists, master, duration, size, thumbnail.

The archive is every ``segment`` row of the session (whatever the live window dropped) and the
``live_init`` row of each epoch. The build checks that every file is there with its recorded
size, renders one ``EXT-X-PLAYLIST-TYPE:VOD`` playlist per rendition (a discontinuity wherever
the epoch changes or a sequence is skipped, each epoch's init as its ``EXT-X-MAP``) and a master
whose BANDWIDTH is the peak segment bit rate measured on the archive, and stores them next to
the media. Playback then reads those files: no request ever lists segment rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db import Database, Kind
from stagecast.errors import StagecastError
from stagecast.live.models import live_init, live_rendition, segment
from stagecast.live.playlists import SegmentEntry, Variant, render_master, render_vod
from stagecast.live.storage import (
    SegmentStorage,
    StorageError,
    media_path,
    session_path,
    session_prefix,
)
from stagecast.vod.models import vod
from stagecast.vod.thumbnails import ThumbnailError, grab_frame

log = logging.getLogger(__name__)

PLAYLIST = "vod.m3u8"  # per rendition, beside its segments (the live one is index.m3u8)
MASTER = "vod-master.m3u8"  # per session (the live one is master.m3u8)
THUMBNAIL = "vod-thumb.jpg"
_VIDEO_CODECS = ("avc1", "avc3", "hvc1", "hev1", "av01", "vp09")


# Asked when files of the recording are missing: True if they will never arrive.
Lost = Callable[[], Awaitable[bool]]


class BuildError(Exception):
    """The recording cannot be built; ``permanent`` ones are not retried."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Piece:
    """One archived media segment."""

    sequence: int
    epoch: int
    discontinuity: bool
    duration: float
    byte_size: int
    program_date_time: datetime
    path: str


@dataclass
class Track:
    """One rendition of the recording: what the master says about it and its segments."""

    name: str
    codecs: str = ""
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    inits: dict[int, str] = field(default_factory=dict)  # epoch -> path
    pieces: list[Piece] = field(default_factory=list)

    @property
    def is_video(self) -> bool:
        """Tell whether this rendition carries video."""
        return self.height is not None or any(c in self.codecs for c in _VIDEO_CODECS)


@dataclass(frozen=True)
class Archive:
    """Everything the build needs, read in one transaction."""

    vod_id: int
    session_id: int
    channel_id: int
    tracks: list[Track]


@dataclass(frozen=True)
class Built:
    """What a build measured and where the thumbnail went."""

    duration: float  # seconds, the longest rendition
    byte_size: int  # every init and media segment of every rendition
    thumbnail_path: str | None


async def load_archive(db: Database, vod_id: int) -> Archive | None:
    """Return the archive of ``vod_id``'s session, or None if the VOD is gone or deleted."""

    async def unit(conn: AsyncConnection) -> Archive | None:
        row = (
            await conn.execute(
                select(vod.c.session_id, vod.c.channel_id).where(
                    vod.c.id == vod_id, vod.c.deleted_at.is_(None)
                )
            )
        ).one_or_none()
        if row is None:
            return None
        tracks = await _tracks(conn, row.session_id)
        return Archive(vod_id, row.session_id, row.channel_id, list(tracks.values()))

    # A long recording has tens of thousands of rows: allow it more than an API read.
    return await db.run(unit, kind=Kind.READ, name="vod_archive", deadline=60, attempt_timeout=20)


async def _tracks(conn: AsyncConnection, session_id: int) -> dict[str, Track]:
    tracks: dict[str, Track] = {}
    for r in await conn.execute(
        select(live_rendition).where(live_rendition.c.session_id == session_id)
    ):
        tracks[r.name] = Track(r.name, r.codecs, r.width, r.height, r.frame_rate)
    for r in await conn.execute(select(live_init).where(live_init.c.session_id == session_id)):
        track = tracks.setdefault(r.rendition, Track(r.rendition))
        track.inits[r.epoch] = r.path
        track.codecs = track.codecs or r.codecs
    for r in await conn.execute(
        select(segment)
        .where(segment.c.session_id == session_id)
        .order_by(segment.c.rendition, segment.c.sequence)
    ):
        tracks.setdefault(r.rendition, Track(r.rendition)).pieces.append(
            Piece(
                r.sequence,
                r.epoch,
                r.discontinuity,
                r.duration,
                r.byte_size,
                r.program_date_time,
                r.path,
            )
        )
    return tracks


def _filename(archive: Archive, track: Track, path: str) -> str:
    """Return the file name of ``path``, which must lie in the rendition's own directory."""
    prefix = f"{archive.channel_id}/{archive.session_id}/{track.name}/"
    name = path.removeprefix(prefix)
    if name == path or not name or "/" in name:
        raise BuildError(f"{path} is outside the rendition directory", permanent=True)
    return name


def _entries(archive: Archive, track: Track) -> list[SegmentEntry]:
    entries = []
    previous: Piece | None = None
    for piece in track.pieces:
        init = track.inits.get(piece.epoch)
        if init is None:
            raise BuildError(f"rendition {track.name} has no init segment for epoch {piece.epoch}")
        jump = previous is not None and (
            piece.epoch != previous.epoch or piece.sequence != previous.sequence + 1
        )
        entries.append(
            SegmentEntry(
                sequence=piece.sequence,
                duration=piece.duration,
                uri=_filename(archive, track, piece.path),
                program_date_time=piece.program_date_time,
                discontinuity=previous is not None and (piece.discontinuity or jump),
                map_uri=_filename(archive, track, init),
                byte_size=piece.byte_size,
            )
        )
        previous = piece
    return entries


def _variant(track: Track) -> Variant:
    if not track.codecs:
        raise BuildError(f"rendition {track.name} has no codecs recorded", permanent=True)
    seconds = sum(p.duration for p in track.pieces)
    total_bits = 8 * sum(p.byte_size for p in track.pieces)
    peak = max(8 * p.byte_size / p.duration for p in track.pieces if p.duration > 0)
    return Variant(
        uri=f"{track.name}/{PLAYLIST}",
        bandwidth=math.ceil(peak),
        average_bandwidth=math.ceil(total_bits / seconds) if seconds > 0 else None,
        codecs=track.codecs,
        resolution=(track.width, track.height) if track.width and track.height else None,
        frame_rate=track.frame_rate,
        name=track.name,
    )


async def _check_files(
    storage: SegmentStorage, archive: Archive, tracks: list[Track], lost: Lost | None
) -> tuple[list[Track], int]:
    """Return the tracks to build and the bytes of their files.

    One listing of the session's files (a bucket lists a thousand per request), not a look-up
    per file. A file missing or short raises BuildError (retried with backoff: one still on
    its way to the storage, in a node's spool, arrives meanwhile), unless ``lost()`` says no
    node will ever store it (its node died with it in the spool): then its segments are left
    out of the VOD.
    """
    prefix = session_prefix(archive.channel_id, archive.session_id)
    try:
        stored = await storage.sizes(prefix)
    except StorageError as exc:
        raise BuildError(f"unusable path {prefix}", permanent=True) from exc
    except StagecastError as exc:
        raise BuildError(f"the media storage cannot be listed: {exc}") from exc
    missing = [
        path
        for track in tracks
        for path in (*track.inits.values(), *(p.path for p in track.pieces))
        if path not in stored
    ]
    if missing:
        if lost is None or not await lost():
            raise BuildError(f"missing file {missing[0]}")
        log.warning(
            "vod %d: %d file(s) never reached the storage (their node died); left out",
            archive.vod_id, len(missing),
        )  # fmt: skip
        tracks = _without(tracks, set(missing))
        if not tracks:
            raise BuildError("no segment of the recording reached the storage", permanent=True)
    total = 0
    for track in tracks:
        for path in track.inits.values():
            total += _size(stored, path, None)
        for piece in track.pieces:
            total += _size(stored, piece.path, piece.byte_size)
    return tracks, total


def _without(tracks: list[Track], missing: set[str]) -> list[Track]:
    """Return the tracks without the pieces whose file, or whose epoch's init, is missing."""
    kept = []
    for track in tracks:
        inits = {epoch: path for epoch, path in track.inits.items() if path not in missing}
        pieces = [p for p in track.pieces if p.path not in missing and p.epoch in inits]
        if pieces:
            kept.append(replace(track, inits=inits, pieces=pieces))
    return kept


def _size(stored: dict[str, int], path: str, expected: int | None) -> int:
    size = stored[path]
    if expected is not None and size != expected:
        raise BuildError(f"{path} has {size} bytes, the archive says {expected}")
    return size


async def build(
    storage: SegmentStorage,
    archive: Archive,
    *,
    ffmpeg: str,
    thumbnail_timeout: float,
    lost: Lost | None = None,
) -> Built:
    """Write the VOD's playlists and thumbnail beside the media; return what was measured.

    Raises BuildError (with a reason for the VOD) when the archive is incomplete. Safe to run
    again: the same files are written again (whole, or kept as they are by a create-only
    bucket: the archive they are rendered from has not changed).
    """
    tracks = [t for t in archive.tracks if t.pieces]
    if not tracks:
        raise BuildError("the recording has no segments", permanent=True)
    tracks, byte_size = await _check_files(storage, archive, tracks, lost)
    try:
        playlists = {track.name: render_vod(_entries(archive, track)) for track in tracks}
        master = render_master([_variant(track) for track in tracks])
    except ValueError as exc:  # a value no playlist can carry: retrying will not change it
        raise BuildError(f"cannot write the playlists: {exc}", permanent=True) from exc
    for name, text in playlists.items():
        try:
            path = media_path(archive.channel_id, archive.session_id, name, PLAYLIST)
        except StorageError as exc:
            raise BuildError(f"rendition name {name!r} is unusable", permanent=True) from exc
        await storage.write(path, text.encode())
    await storage.write(
        session_path(archive.channel_id, archive.session_id, MASTER), master.encode()
    )
    return Built(
        duration=max(sum(p.duration for p in t.pieces) for t in tracks),
        byte_size=byte_size,
        thumbnail_path=await _thumbnail(storage, archive, tracks, ffmpeg, thumbnail_timeout),
    )


async def _thumbnail(
    storage: SegmentStorage, archive: Archive, tracks: list[Track], ffmpeg: str, timeout: float
) -> str | None:
    """Store a frame from about a tenth into the best video rendition; None if there is none."""
    video = [t for t in tracks if t.is_video]
    if not video:
        return None
    track = max(video, key=lambda t: t.height or 0)
    piece = track.pieces[len(track.pieces) // 10]
    try:
        init = await storage.read(track.inits[piece.epoch])
        media = await storage.read(piece.path)
        jpeg = await grab_frame(ffmpeg, init, media, timeout=timeout)
    except (ThumbnailError, StorageError, StagecastError, OSError) as exc:
        # A VOD without a thumbnail still plays: not a reason to fail the build.
        log.warning("vod %d: no thumbnail: %s", archive.vod_id, exc)
        return None
    path = session_path(archive.channel_id, archive.session_id, THUMBNAIL)
    await storage.write(path, jpeg)
    return path
