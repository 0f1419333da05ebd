"""A live session holds bounded memory however long it runs (issue 10 §1: 24/7 streams).

Thousands of synthetic segments (real fMP4 made by ffmpeg, fed again and again) go through a
real ``LiveSession`` on SQLite and local storage; what it keeps must not grow with their count.
The packager is checked over time instead, since it polls ffmpeg ten times a second.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from stagecast.auth import service as accounts
from stagecast.bus import MemoryBus
from stagecast.channels import service as channels
from stagecast.db import Database
from stagecast.live import ladder, service
from stagecast.live.hooks import SessionHooks
from stagecast.live.packager import Packager, PackagerExit
from stagecast.live.session import LiveDeps, LiveSession
from stagecast.live.storage import LocalStorage
from tests.live.conftest import FFMPEG

WINDOW = 6


@pytest.fixture(scope="module")
def tiny_cmaf(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[bytes]]:
    """An init segment and five 2 s media segments of a tiny picture (about 10 KB each)."""
    out = tmp_path_factory.mktemp("tiny")
    subprocess.run(
        [
            FFMPEG, "-hide_banner", "-loglevel", "error",
            "-f", "lavfi", "-i", "color=c=blue:size=64x36:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "10",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "32k", "-f", "hls", "-hls_time", "2",
            "-hls_segment_type", "fmp4", "-hls_playlist_type", "vod", str(out / "index.m3u8"),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return (out / "init.mp4").read_bytes(), [(out / f"index{i}.m4s").read_bytes() for i in range(5)]


def _retained(pattern: str) -> tuple[int, int]:
    """Return (blocks, bytes) still allocated from files matching ``pattern`` (any frame)."""
    gc.collect()  # count what is kept, not garbage a collection has yet to find
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, pattern, all_frames=True)]
    )
    stats = snapshot.statistics("filename")
    return sum(s.count for s in stats), sum(s.size for s in stats)


async def _session(db: Database, root: Path) -> LiveSession:
    owner = await accounts.create_account(db, "caster", "password123", "broadcaster")
    created, _ = await channels.create_channel(db, owner, "marathon")
    row = await service.open_session(
        db, channel_id=created.id, title="t", profile="passthrough", key_version=1, node="n"
    )
    deps = LiveDeps(db, LocalStorage(root), SessionHooks(), MemoryBus(), WINDOW, 2.0)
    return LiveSession(deps, row, slug="marathon", dvr_seconds=0, epoch=0, next_sequences={})


def _held(session: LiveSession) -> dict[str, int]:
    """Return the size of everything the session keeps per segment or per epoch."""
    rendition = session.renditions["source"]
    return {
        "listed": len(rendition.playlist.segments),
        "playlist_bytes": len(rendition.playlist.render()),
        "inits": len(rendition.inits),
        "settled": len(rendition.settled),
        "unarchived": session.unarchived,
    }


async def test_a_long_session_holds_the_same_state_as_a_short_one(
    db: Database, tmp_path: Path, tiny_cmaf: tuple[bytes, list[bytes]], tracing: None
) -> None:
    """After 2N segments (and reconnects) a session keeps what it kept after N: no growth."""
    init, segments = tiny_cmaf
    session = await _session(db, tmp_path / "media")
    fed = 0

    async def feed(count: int) -> None:
        nonlocal fed
        for _ in range(count):
            if fed and fed % 100 == 0:  # an encoder reconnect: a new epoch and init
                session.next_epoch()
                await session.add_init("source", init)
            elif not fed:
                await session.add_init("source", init)
            assert await session.add_segment("source", segments[fed % len(segments)])
            fed += 1
        assert await session.flush(30)

    await feed(150)  # warm-up: caches, pooled connections, the first epochs
    held_at_n = _held(session)
    blocks_at_n, bytes_at_n = _retained("*/stagecast/*")
    await feed(300)
    held_at_2n = _held(session)
    blocks_at_2n, bytes_at_2n = _retained("*/stagecast/*")

    assert held_at_n == held_at_2n
    assert held_at_2n["listed"] == WINDOW
    assert held_at_2n["inits"] <= 2
    # Free lists (tuples, floats) fill up to a bounded few KiB; 300 segments keeping even
    # 100 B each would exceed this.
    assert bytes_at_2n - bytes_at_n < 32 * 1024, (blocks_at_2n - blocks_at_n, bytes_at_n)
    await session.close_playlists()


class _Quiet:
    """Callbacks of a packager that is never fed: nothing arrives, the exit is kept."""

    def __init__(self) -> None:
        self.exits: list[PackagerExit] = []

    async def init(self, name: str, data: bytes) -> None:
        raise AssertionError("no input was written, so no init can come out")

    async def fragment(self, name: str, data: bytes) -> None:
        raise AssertionError("no input was written, so no fragment can come out")

    async def end(self, name: str) -> None:
        pass

    async def exited(self, exit: PackagerExit) -> None:
        self.exits.append(exit)


async def test_a_running_packager_does_not_grow_while_it_waits_for_ffmpeg(
    tmp_path: Path, tracing: None
) -> None:
    """A packager polling a live ffmpeg keeps no memory per poll (24/7: 864,000 polls a day)."""
    quiet = _Quiet()
    command, names = ladder.passthrough(FFMPEG)
    packager = Packager(
        command,
        names,
        on_init=quiet.init,
        on_fragment=quiet.fragment,
        on_end=quiet.end,
        on_exit=quiet.exited,
        stall_after=20,
    )
    await packager.start()
    loop = asyncio.get_running_loop()
    try:
        start_blocks, _ = _retained("*asyncio/base_subprocess.py")
        # Poll with a deadline: 4 s is 40 polls of ffmpeg; a leak of one waiter per poll
        # shows well before it, a bounded packager runs to the deadline.
        deadline = loop.time() + 4.0
        grown = 0
        while loop.time() < deadline and grown < 20:
            await asyncio.sleep(0.25)
            grown = _retained("*asyncio/base_subprocess.py")[0] - start_blocks
        assert grown < 5, f"{grown} blocks kept by asyncio's subprocess transport"
    finally:
        await packager.finish()
    assert len(quiet.exits) == 1  # supervised to the end: its exit was reported once
