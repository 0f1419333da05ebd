"""The studio's telemetry holds bounded memory however long a stream runs (issue 10 §1).

Thousands of segments and RTMP messages of one stream go through the real observers
(``IngestMetrics``) and the real 1 Hz snapshot builder on a synthetic clock (2 s per segment);
what they keep after 2N segments must be what they kept after N.
"""

from __future__ import annotations

import gc
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stagecast.live.hooks import MediaEvent, SegmentEvent
from stagecast.studio.presence import ViewerCounts
from stagecast.studio.snapshots import Snapshots
from stagecast.studio.telemetry import IngestMetrics


@dataclass
class _Session:
    """What the snapshot builder reads of a live session."""

    id: int = 7
    channel_id: int = 3
    slug: str = "marathon"
    state: str = "live"
    reconnects: int = 0
    segments_dropped: int = 0
    last_media: float = 0.0
    started_at: datetime | None = datetime(2024, 5, 1, tzinfo=UTC)
    unarchived: int = 0
    unstored: int = 0


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _retained() -> tuple[int, int]:
    """Return (live container objects, bytes still allocated by Stagecast's code).

    The bytes include blocks CPython keeps on its free lists (tuples, floats), which fill up
    over a run and then stay: bounded noise of a few tens of KiB, hence the object count too.
    """
    gc.collect()  # count what is kept, not garbage a collection has yet to find
    objects = len(gc.get_objects())  # before the snapshot, which makes objects of its own
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*/stagecast/*", all_frames=True)]
    )
    return objects, sum(s.size for s in snapshot.statistics("filename"))


def test_telemetry_of_a_long_stream_is_as_big_as_of_a_short_one(tracing: None) -> None:
    """2N segments (with their RTMP messages, a drop or a reconnect now and then, and two ticks
    per segment) leave the windows and snapshots as big as N did."""
    clock = _Clock()
    ingest = IngestMetrics(clock=clock)
    snapshots = Snapshots(ingest)
    session = _Session()
    viewers = {session.id: ViewerCounts(4, 6, 11)}
    wall = datetime(2024, 5, 1, 18, tzinfo=UTC)
    fed = 0

    def feed(count: int) -> None:
        nonlocal fed, wall
        for _ in range(count):
            for half in range(2):  # one second of RTMP messages, then a tick
                base = int((clock.now - 1000) * 1000)
                for frame in range(30):
                    at = base + frame * 33
                    keyframe = half == 0 and frame == 0
                    ingest.on_media(MediaEvent(7, 3, "video", at, 12_000, keyframe))
                    ingest.on_media(MediaEvent(7, 3, "audio", at, 400, False))
                clock.now += 1.0
                wall += timedelta(seconds=1)
                snapshots.build([session], viewers, clock.now, wall)
            if fed % 97 == 0:
                session.segments_dropped += 1
                session.reconnects += fed % 2
            for rendition in ("source", "720p", "480p"):
                ingest.on_segment(
                    SegmentEvent(7, 3, rendition, fed, fed * 2.0, 2.0, 600_000, 60, True,
                                 fed % 100 == 0, 0.002)
                )  # fmt: skip
            session.last_media = clock.now
            fed += 1

    feed(300)  # warm-up: every window full, every cached summary made
    at_n = _retained()
    feed(2000)
    at_more = _retained()
    stream = ingest.get(7)
    assert stream is not None
    assert all(w.count <= 16 for w in stream.renditions.values())  # 30 s of 2 s segments
    assert at_more[0] - at_n[0] < 50, (at_n, at_more)  # one object per 40 segments
    assert at_more[1] - at_n[1] < 64 * 1024, (at_n, at_more)  # 32 B per segment
