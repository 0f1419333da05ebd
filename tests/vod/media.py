"""Real fMP4 media made by ffmpeg, and sessions recorded the way the live pipeline records them.

``make_media`` encodes short test-pattern clips into fMP4 HLS (init segment + media segments)
for two renditions and two epochs (an encoder reconnect), and reads the master playlist
ffmpeg writes for their real CODECS, BANDWIDTH and RESOLUTION. ``record_session`` stores those
files through ``LocalStorage`` under the server-built paths and inserts the ``live_session``,
``live_rendition``, ``live_init`` and ``segment`` rows, like the segmenter does.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import imageio_ffmpeg
import m3u8
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live.hooks import EndedSession, SessionHooks
from stagecast.live.models import live_init, live_rendition, live_session, segment
from stagecast.live.storage import LocalStorage, media_path

# (name, width, height); two epochs of (seconds, test source).
RENDITIONS = (("high", 640, 360), ("low", 320, 180))
EPOCHS = ((8, "testsrc2"), (6, "smptebars"))
SEGMENT_SECONDS = 1


@dataclass
class Clip:
    """One rendition of one epoch: its init segment and media segments (bytes, seconds)."""

    init: bytes
    segments: list[tuple[bytes, float]]


@dataclass
class RenditionInfo:
    """What ffmpeg's master playlist says about a rendition."""

    codecs: str
    bandwidth: int
    average_bandwidth: int
    width: int
    height: int
    frame_rate: float


@dataclass
class Media:
    """Clips per (rendition, epoch) and the facts per rendition."""

    clips: dict[tuple[str, int], Clip] = field(default_factory=dict)
    info: dict[str, RenditionInfo] = field(default_factory=dict)

    def segment_count(self, rendition: str) -> int:
        """Return how many media segments a rendition has over every epoch."""
        return sum(len(c.segments) for (r, _), c in self.clips.items() if r == rendition)


def _encode(out: Path, width: int, height: int, seconds: int, source: str) -> None:
    out.mkdir(parents=True)
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-nostdin", "-v", "error"),
            *("-f", "lavfi", "-i", f"{source}=size={width}x{height}:rate=30"),
            *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
            *("-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
            *("-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k"),
            *("-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod"),
            *("-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"),
            *("-hls_segment_filename", str(out / "seg-%d.m4s"), "-master_pl_name", "master.m3u8"),
            str(out / "index.m3u8"),
        ],
        check=True,
        timeout=60,
    )


def make_media(root: Path) -> Media:
    """Encode every clip under ``root`` and read them back."""
    media = Media()
    for name, width, height in RENDITIONS:
        for epoch, (seconds, source) in enumerate(EPOCHS):
            out = root / f"{name}-{epoch}"
            _encode(out, width, height, seconds, source)
            playlist = m3u8.load(str(out / "index.m3u8"))
            media.clips[(name, epoch)] = Clip(
                (out / "init.mp4").read_bytes(),
                [((out / s.uri).read_bytes(), float(s.duration)) for s in playlist.segments],
            )
            if epoch == 0:
                variant = m3u8.load(str(out / "master.m3u8")).playlists[0].stream_info
                media.info[name] = RenditionInfo(
                    variant.codecs,
                    int(variant.bandwidth),
                    int(variant.average_bandwidth or variant.bandwidth),
                    width,
                    height,
                    30.0,
                )
    return media


@dataclass(frozen=True)
class Recorded:
    """A session recorded into storage and the database."""

    session_id: int
    channel_id: int
    started_at: datetime
    paths: list[str]  # every media segment path, in order, all renditions


async def record_session(
    db: Database,
    storage: LocalStorage,
    media: Media,
    channel_id: int,
    *,
    title: str = "Test show",
    epochs: int = 2,
) -> Recorded:
    """Record ``media`` as one session of ``channel_id`` (state ``live``); return its ids."""
    started = utcnow() - timedelta(minutes=5)

    async def open_unit(conn: AsyncConnection) -> int:
        result = await conn.execute(
            insert(live_session)
            .values(
                channel_id=channel_id,
                state="live",
                title=title,
                profile="abr",
                key_version=1,
                owner_node="test:1",
                reconnects=max(epochs - 1, 0),
                created_at=started,
                started_at=started,
                last_media_at=utcnow(),
            )
            .returning(live_session.c.id)
        )
        return int(result.scalar_one())

    session_id = await db.run(open_unit, kind=Kind.WRITE)
    rows: list[dict[str, object]] = []
    inits: list[dict[str, object]] = []
    paths: list[str] = []
    for name, _, _ in RENDITIONS:
        sequence, clock = 0, started
        for epoch in range(epochs):
            clip = media.clips[(name, epoch)]
            init_path = media_path(channel_id, session_id, name, f"init-{epoch}.mp4")
            await storage.write(init_path, clip.init)
            inits.append(
                {
                    "session_id": session_id,
                    "rendition": name,
                    "epoch": epoch,
                    "path": init_path,
                    "codecs": media.info[name].codecs,
                    "created_at": clock,
                }
            )
            for index, (data, seconds) in enumerate(clip.segments):
                path = media_path(channel_id, session_id, name, f"seg-{sequence:08d}.m4s")
                await storage.write(path, data)
                paths.append(path)
                rows.append(
                    {
                        "session_id": session_id,
                        "rendition": name,
                        "sequence": sequence,
                        "epoch": epoch,
                        "discontinuity": epoch > 0 and index == 0,
                        "duration": seconds,
                        "byte_size": len(data),
                        "program_date_time": clock,
                        "path": path,
                        "created_at": clock,
                    }
                )
                sequence += 1
                clock += timedelta(seconds=seconds)
            clock += timedelta(seconds=3)  # the encoder was away for a moment

    async def media_unit(conn: AsyncConnection) -> None:
        for name, _, _ in RENDITIONS:
            info = media.info[name]
            await conn.execute(
                insert(live_rendition).values(
                    session_id=session_id,
                    name=name,
                    codecs=info.codecs,
                    width=info.width,
                    height=info.height,
                    frame_rate=info.frame_rate,
                    bandwidth=info.bandwidth,
                    average_bandwidth=info.average_bandwidth,
                )
            )
        if rows:
            await conn.execute(insert(live_init), inits)
            await conn.execute(insert(segment), rows)

    await db.run(media_unit, kind=Kind.WRITE)
    return Recorded(session_id, channel_id, started, paths)


async def end_session(
    db: Database, session_id: int, hooks: SessionHooks | None, *, reason: str = "ended"
) -> None:
    """End a session in one transaction, running ``hooks`` in it (None: a bare UPDATE)."""

    async def unit(conn: AsyncConnection) -> None:
        now = utcnow()
        row = (
            await conn.execute(
                update(live_session)
                .where(live_session.c.id == session_id)
                .values(state="ended", ended_at=now, end_reason=reason)
                .returning(
                    live_session.c.channel_id, live_session.c.title, live_session.c.started_at
                )
            )
        ).one()
        if hooks is not None:
            ended = EndedSession(session_id, row.channel_id, row.title, row.started_at, now, reason)
            for hook in hooks.on_ended:
                await hook(conn, ended)

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE)
