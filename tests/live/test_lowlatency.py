"""LL-HLS: part cutting and playlist rules as properties, blocking semantics on a live server."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import m3u8
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagecast.config import Settings
from stagecast.live.fmp4 import SegmentInfo
from stagecast.live.lowlatency import LowLatencyPlaylist, PartEntry
from stagecast.live.parts import Cutter, Part, SegmentEnd, part_target_for
from stagecast.live.playlists import SegmentEntry
from tests.conftest import RunningServer, serve
from tests.live.streaming import make_channel, publish, wait_for

_PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="(part-\d+\.m4s)"(,INDEPENDENT=YES)?')
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(part-(\d+)\.m4s)"')


def _fragment(frames: int, frame: float, key: bool) -> SegmentInfo:
    return SegmentInfo(frames * frame, 0.0, frames, key, 100)


@given(
    rate=st.sampled_from([24.0, 25.0, 29.97, 30.0, 50.0, 60.0]),
    gop_frames=st.integers(min_value=12, max_value=150),
    sizes=st.lists(st.integers(min_value=1, max_value=2), min_size=20, max_size=400),
)
def test_parts_are_frame_aligned_and_within_the_target(
    rate: float, gop_frames: int, sizes: list[int]
) -> None:
    """Parts never exceed PART-TARGET, are >= 85 % of it unless they end a segment, and every
    segment starts with an independent part."""
    frame = 1 / rate
    target = part_target_for(frame)
    assert 0.2 <= target.seconds <= 0.5 + 0.001
    cutter = Cutter(target, 2.0, has_video=True)
    cuts: list[Part | SegmentEnd] = []
    position = 0
    for size in sizes:
        key = position % gop_frames == 0
        size = 1 if key or (position + 1) % gop_frames == 0 else size  # key frames start one
        cuts += cutter.push(b"x" * size, _fragment(size, frame, key))
        position += size
    cuts += cutter.finish()
    parts = [c for c in cuts if isinstance(c, Part)]
    assert parts
    assert parts[0].first
    assert parts[0].independent
    for before, after in itertools.pairwise(cuts):
        if isinstance(after, Part) and isinstance(before, SegmentEnd):
            assert after.first
            assert after.independent
    for index, cut in enumerate(cuts):
        if not isinstance(cut, Part):
            continue
        assert cut.duration <= target.seconds + 0.0015
        ends_segment = index + 1 < len(cuts) and isinstance(cuts[index + 1], SegmentEnd)
        if not ends_segment and index + 1 < len(cuts):
            assert cut.duration >= 0.85 * target.seconds - 1e-9


def _playlist(segments: int, parts_per: int, open_parts: int) -> LowLatencyPlaylist:
    playlist = LowLatencyPlaylist(part_target=0.334, window_segments=30, min_target_duration=2)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    number = 0
    for sequence in range(segments + 1):
        count = parts_per if sequence < segments else open_parts
        for index in range(count):
            part = PartEntry(number, 2.0 / parts_per, index == 0)
            playlist.add_part(part, map_uri="init-0.mp4", discontinuity=False)
            number += 1
        if sequence < segments:
            uri = f"seg-{sequence:08d}.m4s"
            pdt = start + timedelta(seconds=2 * sequence)
            playlist.append(SegmentEntry(sequence, 2.0, uri, pdt, False, "init-0.mp4", 1000))
    return playlist


@given(segments=st.integers(1, 30), open_parts=st.integers(0, 5))
def test_the_playlist_follows_the_ll_hls_rules(segments: int, open_parts: int) -> None:
    """Hold-backs, parts only near the edge, a preload hint, and a delta update that gives the
    full playlist back when applied to the one before."""
    playlist = _playlist(segments, 6, open_parts)
    text = playlist.render()
    parsed = m3u8.loads(text)
    assert parsed.server_control.can_block_reload == "YES"
    assert parsed.server_control.part_hold_back == pytest.approx(3 * 0.334)
    assert parsed.server_control.hold_back >= 3 * parsed.target_duration
    assert parsed.server_control.can_skip_until >= 6 * parsed.target_duration
    assert parsed.part_inf.part_target == pytest.approx(0.334)
    durations = [float(m[0]) for m in _PART.findall(text)]
    assert all(d <= 0.334 for d in durations)
    # Parts are listed for at most the last three target durations (plus the one they end in).
    assert sum(durations) <= 3 * parsed.target_duration + 2.0
    hint = _HINT.search(text)
    assert hint is not None
    assert int(hint[2]) == playlist.next_part
    delta = m3u8.loads(playlist.rendered_delta().text)
    skipped = delta.skip.skipped_segments if delta.skip else 0
    whole = [s.uri for s in parsed.segments if s.uri]
    kept = [s.uri for s in delta.segments if s.uri]
    assert whole[:skipped] + kept == whole  # applying the delta to the full list gives it back
    if skipped:
        assert sum(s.duration for s in parsed.segments[skipped:] if s.uri) <= 12.0 + 2.0


def test_blocking_positions() -> None:
    """A part past the end of a completed segment is the next segment's first part; requests
    too far ahead are recognised (answered 400)."""
    playlist = _playlist(3, 6, 2)
    assert playlist.has(2, 5)
    assert playlist.has(3, 1)
    assert playlist.has(2, 6)  # = segment 3 part 0, which exists
    assert not playlist.has(3, 2)
    assert not playlist.too_far(3, 3, 6)
    assert playlist.too_far(3, 5, 6)  # three parts past the last one is the limit
    assert playlist.too_far(6, None, 6)  # more than two segments ahead


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A running Stagecast."""
    settings.live_window_segments = 4
    async with serve(settings) as running:
        yield running


async def _media_url(http: httpx.AsyncClient, slug: str) -> str:
    status = await wait_for(http, f"/api/v1/channels/{slug}/live", lambda b: b["state"] == "live")
    master = m3u8.loads((await http.get(status["master_url"])).text)
    return f"/hls/{slug}/{master.playlists[0].uri.split('?')[0]}"


async def test_blocking_reloads_and_parts_on_a_live_stream(server: RunningServer) -> None:
    """A blocking reload is held until the asked-for part exists and then lists it; the
    preload-hinted part is held until it is made; bad directives are 400; the end of the
    session answers a held request at once."""
    key = await make_channel(server, "fast")
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=15) as http,
        publish(server, key, 30),
    ):
        url = await _media_url(http, "fast")
        text = (await http.get(url)).text
        assert "#EXT-X-PART-INF:PART-TARGET=0.334" in text
        parsed = m3u8.loads(text)
        last = parsed.media_sequence + len([s for s in parsed.segments if s.uri])
        hint = _HINT.search(text)
        assert hint is not None
        open_parts = len(parsed.segments[-1].parts) if not parsed.segments[-1].uri else 0
        held = await http.get(url, params={"_HLS_msn": last, "_HLS_part": open_parts})
        assert held.status_code == 200
        assert held.headers["cache-control"].startswith("public, max-age=")
        after = m3u8.loads(held.text)
        assert after.media_sequence + len(after.segments) - 1 >= last
        part = await http.get(url.replace("index.m3u8", hint[1]))
        assert part.status_code == 200
        assert part.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert part.content[4:8] == b"moof"
        assert (await http.get(url, params={"_HLS_part": 1})).status_code == 400
        assert (await http.get(url, params={"_HLS_msn": last + 50})).status_code == 400
        assert (await http.get(url, params={"_HLS_skip": "maybe"})).status_code == 400
        assert (await http.get(url, params={"_HLS_msn": "-1"})).status_code == 400
        delta = await http.get(url, params={"_HLS_skip": "YES"})
        assert delta.status_code == 200
        live = server.runtime.live
        ahead = m3u8.loads((await http.get(url)).text)
        edge = ahead.media_sequence + len([s for s in ahead.segments if s.uri])
        waiting = asyncio.ensure_future(http.get(url, params={"_HLS_msn": edge + 1}))
        async with asyncio.timeout(5):
            while live.holds.held == 0:  # the request is held by the server now
                await asyncio.sleep(0.01)
        found = await live.lookups.channel("fast", fresh=True)
        assert found is not None
        assert await live.manager.end(found.channel_id, "ended by the test")
        released = await asyncio.wait_for(waiting, 5)  # well before the 6 s hold limit
        assert released.status_code == 200
        assert "#EXT-X-ENDLIST" in released.text


async def test_a_standard_channel_gets_standard_hls(server: RunningServer) -> None:
    """A channel set to ``standard`` latency is served plain HLS: no parts, no server control,
    and a blocking reload is refused with 400."""
    key = await make_channel(server, "plain", latency="standard")
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=15) as http,
        publish(server, key, 12),
    ):
        url = await _media_url(http, "plain")
        text = (await http.get(url)).text
        assert "#EXT-X-PART" not in text
        assert "#EXT-X-SERVER-CONTROL" not in text
        assert "#EXT-X-PRELOAD-HINT" not in text
        assert (await http.get(url, params={"_HLS_msn": 0})).status_code == 400


def test_the_cutter_measures_the_part_target_from_the_shortest_first_frames() -> None:
    """Given no target, the cutter skips what comes before the first key frame, holds back the
    first fragments, and takes the shortest frame among them: an encoder's stretched first
    frame (54 ms at 30 fps) does not make parts of 6 frames."""
    cutter = Cutter(None, 2.0, has_video=True)
    assert cutter.push(b"a", _fragment(1, 1 / 30, False)) == []  # before any key frame
    cuts = cutter.push(b"k", _fragment(1, 0.054, True))
    for _ in range(20):
        cuts += cutter.push(b"f", _fragment(1, 1 / 30, False))
    assert cutter.target is not None
    assert cutter.target.seconds == 0.334
    parts = [c for c in cuts if isinstance(c, Part)]
    assert parts[0].first
    assert parts[0].independent
    assert parts[0].data.startswith(b"k")
    end = [c for c in cutter.finish() if isinstance(c, SegmentEnd)]
    assert len(end) == 1
    assert end[0].data == b"k" + b"f" * 20  # the segment is its parts, nothing dropped
