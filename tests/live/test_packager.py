"""The packager: a real ffmpeg turns FLV on stdin into fMP4 fragments on pipes, and is supervised.

Fragments are cut into parts and segments by ``live.parts.Cutter``, as the session does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from stagecast.live import ladder
from stagecast.live.fmp4 import parse_init, parse_segment
from stagecast.live.packager import Packager, PackagerExit, PackagerGone
from stagecast.live.parts import Cutter, Part, SegmentEnd, part_target_for
from tests.live.conftest import FFMPEG


class Collector:
    """Gathers what a packager hands out."""

    def __init__(self) -> None:
        self.inits: dict[str, bytes] = {}
        self.segments: list[tuple[str, bytes]] = []
        self.parts: list[tuple[str, Part]] = []
        self.ended: list[str] = []
        self.exits: list[PackagerExit] = []
        self._cutters: dict[str, Cutter] = {}
        self._open: dict[str, list[bytes]] = {}

    async def init(self, name: str, data: bytes) -> None:
        self.inits[name] = data

    async def fragment(self, name: str, data: bytes) -> None:
        init = parse_init(self.inits[name])
        info = parse_segment(data, init)
        if name not in self._cutters:
            frame = info.duration / info.video_frames if info.video_frames else info.duration
            self._cutters[name] = Cutter(part_target_for(frame), 2.0, has_video=True)
        self._take(name, self._cutters[name].push(data, info))

    def _take(self, name: str, cuts: list[Part | SegmentEnd]) -> None:
        for cut in cuts:
            if isinstance(cut, Part):
                self.parts.append((name, cut))
                self._open.setdefault(name, []).append(cut.data)
            else:
                self.segments.append((name, b"".join(self._open.pop(name, []))))

    async def end(self, name: str) -> None:
        self.ended.append(name)
        if name in self._cutters:
            self._take(name, self._cutters[name].finish())

    async def exited(self, exit: PackagerExit) -> None:
        self.exits.append(exit)

    def packager(self, command: list[str], names: list[str], *, stall_after: float) -> Packager:
        """Return a packager that reports its inits, fragments and exit here."""
        return Packager(
            command,
            names,
            on_init=self.init,
            on_fragment=self.fragment,
            on_end=self.end,
            on_exit=self.exited,
            stall_after=stall_after,
        )


async def _feed(packager: Packager, data: bytes, chunk: int = 64 * 1024) -> None:
    for start in range(0, len(data), chunk):
        await packager.write(data[start : start + chunk])


async def test_passthrough_produces_whole_segments_in_order(tmp_path: Path, flv_file: Path) -> None:
    """Six seconds of 2 s GOPs become an init, frame-aligned parts and 3 segments of ~2 s."""
    got = Collector()
    command, names = ladder.passthrough(FFMPEG)
    packager = got.packager(command, names, stall_after=20)
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
    assert got.ended == ["source"]
    # Parts of 10 frames at 30 fps; every segment starts with an independent part.
    target = part_target_for(1 / 30)
    assert target.seconds == 0.334
    lengths = [part.duration for _, part in got.parts]
    assert max(lengths) <= target.seconds + 0.0015
    assert sum(1 for _, part in got.parts if part.first) == 3
    assert all(part.independent for _, part in got.parts if part.first)
    for _, data in got.segments:
        assert parse_segment(data, init).starts_with_keyframe


async def test_abr_ladder_has_aligned_renditions(tmp_path: Path) -> None:
    """The ABR profile yields source + smaller rungs whose segments start together on keyframes."""
    from tests.live.conftest import make_flv

    source = make_flv(tmp_path / "hd.flv", seconds=6, size="1280x720")
    got = Collector()
    command, names = ladder.abr(FFMPEG, source_height=720, has_audio=True)
    assert names == ["source", "480p", "360p"]
    packager = got.packager(command, names, stall_after=30)
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
    command, names = ladder.passthrough(FFMPEG)
    packager = got.packager(command, names, stall_after=20)
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
    command, names = ladder.passthrough(FFMPEG)
    packager = got.packager(command, names, stall_after=1.0)
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
        await packager.exited.wait()
    assert got.exits[0].reason == "stalled"
