"""Snapshots as typed payloads: the wire form, reading it back, and what a tick reuses."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from stagecast.bus import MemoryBus
from stagecast.live.states import SessionState
from stagecast.studio.health import GOOD, Health
from stagecast.studio.snapshots import (
    SNAPSHOT_TOPIC,
    IngestFigures,
    RenditionFigures,
    Snapshot,
    message,
)
from tests.studio.test_publisher import FakeSession, feed, make, wire
from tests.studio.test_telemetry import segment_event


async def _live_snapshot() -> Snapshot:
    """Return the snapshot of a stream fed 20 s of media, with one viewer."""
    session = FakeSession(9, 3)
    publisher, ingest, clock = make([session])
    publisher.viewers.seen(9, "viewer-one")
    feed(ingest, clock, session, 20)
    [snapshot] = await publisher.tick()
    return snapshot


def _same_as_constructed(value: object) -> None:
    """Assert that ``value`` equals what its class's constructor makes of its fields."""
    assert dataclasses.is_dataclass(value)
    assert not isinstance(value, type)
    names = [f.name for f in dataclasses.fields(value)]
    assert list(vars(value)) == names  # every field, in order, nothing else
    assert type(value)(**{name: getattr(value, name) for name in names}) == value


async def test_the_fast_builders_make_what_the_constructors_make() -> None:
    """Snapshot, ingest figures and rendition summaries equal their dataclass-built twins."""
    snapshot = await _live_snapshot()
    _same_as_constructed(snapshot)
    _same_as_constructed(snapshot.ingest)
    [rendition] = snapshot.renditions
    _same_as_constructed(rendition)
    assert isinstance(snapshot.ingest, IngestFigures)
    assert isinstance(rendition, RenditionFigures)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.uptime = 0.0  # type: ignore[misc]
    published = message(snapshot)
    assert published == SNAPSHOT_TOPIC.encode(snapshot)
    assert list(published) == list(SNAPSHOT_TOPIC.encode(snapshot))


async def test_publishing_leaves_the_snapshot_as_it_was() -> None:
    """The bus is handed the snapshot's own fields; a subscribed publish changes none of them."""
    session = FakeSession(9, 3)
    bus = MemoryBus()
    publisher, ingest, clock = make([session], bus)
    feed(ingest, clock, session, 20)
    async with await SNAPSHOT_TOPIC.subscribe(bus, 3) as subscription:
        [snapshot] = await publisher.tick()
        before = dict(vars(snapshot))
        received = await subscription.get(1)
    assert received == wire(snapshot)
    assert vars(snapshot) == before
    assert SNAPSHOT_TOPIC.decode(wire(snapshot)) == snapshot


async def test_the_wire_form_keeps_its_field_names_and_types() -> None:
    """On the bus a snapshot is the JSON the studio's JavaScript reads, key for key."""
    data = wire(await _live_snapshot())
    assert list(data) == [
        "type", "channel_id", "session_id", "slug", "state", "at", "uptime", "health",
        "viewers", "ingest", "renditions",
    ]  # fmt: skip
    assert data["type"] == "snapshot"
    assert (data["channel_id"], data["session_id"], data["slug"]) == (3, 9, "show")
    assert data["state"] == "live"
    assert datetime.fromisoformat(data["at"]).utcoffset() is not None
    assert isinstance(data["uptime"], float)
    assert data["health"] == {"verdict": "good", "reasons": []}
    assert data["viewers"] == {"current": 1, "peak": 1, "unique": 1}
    assert list(data["ingest"]) == [
        "bitrate_kbps", "frame_rate", "keyframe_interval", "keyframe_interval_max",
        "since_media", "segments_dropped", "segments_dropped_recent", "late_segments",
        "reconnects", "unarchived",
    ]  # fmt: skip
    [rendition] = data["renditions"]
    assert list(rendition) == [
        "name", "bitrate_kbps", "frame_rate", "segment_duration", "segment_jitter", "segments",
        "late_segments",
    ]  # fmt: skip


async def test_a_snapshot_reads_back_from_its_wire_form_with_its_types() -> None:
    """``SNAPSHOT_TOPIC.decode`` of the JSON gives the very snapshot: enums, times, parts."""
    snapshot = await _live_snapshot()
    back = SNAPSHOT_TOPIC.decode(wire(snapshot))
    assert back == snapshot
    assert back.state is SessionState.LIVE
    assert isinstance(back.at, datetime)
    assert isinstance(back.health, Health)
    assert isinstance(back.renditions, tuple)


async def test_malformed_snapshots_do_not_decode() -> None:
    """A message missing a part, or with a wrong type or state, raises ValueError."""
    data = wire(await _live_snapshot())
    for broken in (
        {k: v for k, v in data.items() if k != "ingest"},
        {**data, "viewers": {"current": "many", "peak": 1, "unique": 1}},
        {**data, "state": "on fire"},
        {**data, "type": "vod.ready"},
    ):
        with pytest.raises(ValueError, match="validation error"):
            SNAPSHOT_TOPIC.decode(broken)


async def test_a_tick_reuses_the_parts_that_did_not_change() -> None:
    """No new media between ticks: same ingest, renditions, viewers and verdict instances, in a
    new snapshot with a later time."""
    session = FakeSession(9, 3)
    publisher, ingest, clock = make([session])
    feed(ingest, clock, session, 20)
    [first] = await publisher.tick()
    [second] = await publisher.tick()
    assert second is not first
    assert second.at >= first.at
    assert second.ingest is first.ingest
    assert second.renditions is first.renditions
    assert second.viewers is first.viewers
    assert second.health is first.health is GOOD
    ingest.on_segment(segment_event(9, 3, "source", 250_000, sequence=10))
    [third] = await publisher.tick()
    assert third.renditions is not second.renditions
    assert third.renditions[0].segments == second.renditions[0].segments + 1
