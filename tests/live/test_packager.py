"""The packager: a real ffmpeg turns FLV on stdin into whole CMAF segments, and is supervised."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stagecast.live import ladder
from stagecast.live.fmp4 import parse_init, parse_segment
from stagecast.live.packager import Packager, PackagerExit, PackagerGone
from tests.live.conftest import FFMPEG


class Collector:
    """Gathers what a packager hands out."""

    def __init__(self) -> None:
        self.inits: dict[str, bytes] = {}
        self.segments: list[tuple[str, bytes]] = []
        self.exits: list[PackagerExit] = []

    async def init(self, name: str, data: bytes) -> None:
        self.inits[name] = data

    async def segment(self, name: str, data: bytes, file: Path) -> None:
        self.segments.append((name, data))

    async def exited(self, exit: PackagerExit) -> None:
        self.exits.append(exit)

    def packager(
        self, command: list[str], names: list[str], out: Path, *, stall_after: float
    ) -> Packager:
        """Return a packager that reports its inits, segments and exit here."""
        return Packager(
            command,
            names,
            out,
            on_init=self.init,
            on_segment=self.segment,
            on_exit=self.exited,
            stall_after=stall_after,
        )


async def _feed(packager: Packager, data: bytes, chunk: int = 64 * 1024) -> None:
    for start in range(0, len(data), chunk):
        await packager.write(data[start : start + chunk])


async def test_passthrough_produces_whole_segments_in_order(tmp_path: Path, flv_file: Path) -> None:
    """Six seconds of 2 s GOPs become an init and ~3 segments of ~2 s, then a clean exit."""
    got = Collector()
    command, names = ladder.passthrough(FFMPEG, tmp_path / "out", 2.0)
    packager = got.packager(command, names, tmp_path / "out", stall_after=20)
    await packager.start()
    await _feed(packager, flv_file.read_bytes())
    await packager.finish()
    assert [e.reason for e in got.exits] == ["finished"]
    init = parse_init(got.inits["source"])
    assert init.video is not None
    assert (init.video.width, init.video.height) == (640, 360)
    durations = [parse_segment(data, init).duration for _, data in got.segments]
    assert len(durations) == 3
    assert abs(sum(durations) - 6.0) < 0.1
    assert not (tmp_path / "out").exists()  # scratch files are cleaned up


async def test_abr_ladder_has_aligned_renditions(tmp_path: Path) -> None:
    """The ABR profile yields source + smaller rungs whose segments start together on keyframes."""
    from tests.live.conftest import make_flv

    source = make_flv(tmp_path / "hd.flv", seconds=6, size="1280x720")
    got = Collector()
    command, names = ladder.abr(FFMPEG, tmp_path / "out", 2.0, source_height=720, has_audio=True)
    assert names == ["source", "480p", "360p"]
    packager = got.packager(command, names, tmp_path / "out", stall_after=30)
    await packager.start()
    await _feed(packager, source.read_bytes())
    await packager.finish()
    assert got.exits[0].reason == "finished", got.exits[0].stderr_tail
    assert set(got.inits) == set(names)
    starts: dict[str, list[float]] = {}
    for name, data in got.segments:
        info = parse_segment(data, parse_init(got.inits[name]))
        assert info.starts_with_keyframe
        starts.setdefault(name, []).append(round(info.start_time, 2))
    heights = {n: parse_init(got.inits[n]).video.height for n in names}  # type: ignore[union-attr]
    assert heights == {"source": 720, "480p": 480, "360p": 360}
    # Same keyframes everywhere: decode times agree to within one frame (x264's B-frame delay
    # shifts decode time, not presentation time, by a frame).
    assert len(starts["source"]) == len(starts["480p"]) == len(starts["360p"]) == 3
    for rung in ("480p", "360p"):
        for a, b in zip(starts["source"], starts[rung], strict=True):
            assert abs(a - b) <= 1 / 30 + 0.005


async def test_a_crashed_ffmpeg_is_reported_once_with_its_stderr(tmp_path: Path) -> None:
    """Garbage input makes ffmpeg exit; the exit is reported once, writes then fail fast."""
    got = Collector()
    command, names = ladder.passthrough(FFMPEG, tmp_path / "out", 2.0)
    packager = got.packager(command, names, tmp_path / "out", stall_after=20)
    await packager.start()
    try:
        await packager.write(b"this is not an flv stream" * 100)
        packager._process.stdin.close()  # type: ignore[union-attr]
    except PackagerGone:
        pass
    async with asyncio.timeout(15):
        await packager.exited.wait()
    assert len(got.exits) == 1
    assert got.exits[0].reason == "exited"
    assert got.exits[0].stderr_tail
    try:
        await packager.write(b"more")
    except PackagerGone:
        pass
    else:
        raise AssertionError("write after exit must fail")


async def test_a_stalled_ffmpeg_is_killed(tmp_path: Path, flv_file: Path) -> None:
    """Input that keeps coming without producing segments gets ffmpeg killed as stalled."""
    got = Collector()
    command, names = ladder.passthrough(FFMPEG, tmp_path / "out", 2.0)
    packager = got.packager(command, names, tmp_path / "out", stall_after=1.0)
    await packager.start()
    header = flv_file.read_bytes()[:13]  # a valid FLV header, then nothing useful
    await packager.write(header)

    async def trickle() -> None:
        while not packager.exited.is_set():
            try:
                await packager.write(b"\x00")
            except PackagerGone:
                return
            await asyncio.sleep(0.2)

    async with asyncio.timeout(20):
        await trickle()
    assert got.exits[0].reason == "stalled"
