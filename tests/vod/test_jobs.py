"""From session end to VOD: durable jobs, real builds, bounded retries, sweeps, purges."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import m3u8
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.channels.service import Channel
from stagecast.config import Settings
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live.hooks import SessionHooks
from stagecast.live.models import segment
from stagecast.live.storage import LocalStorage, session_path
from stagecast.vod import counters, jobs, service
from stagecast.vod.building import MASTER, PLAYLIST
from stagecast.vod.jobs import Policy
from stagecast.vod.models import vod, vod_job
from stagecast.vod.worker import VodWorker
from tests.vod.conftest import POLICY, count, drain, make_channel, make_worker, scalar
from tests.vod.media import RENDITIONS, Media, Recorded, end_session, record_session


@pytest.fixture
async def recorded(
    db: Database, storage: LocalStorage, media: Media, channel: Channel, hooks: SessionHooks
) -> Recorded:
    """A session of ``channel`` recorded and ended: its VOD and build job exist, not built."""
    found = await record_session(db, storage, media, channel.id)
    await end_session(db, found.session_id, hooks)
    return found


async def _vod_row(db: Database, session_id: int) -> object:
    async def unit(conn: AsyncConnection) -> object:
        return (await conn.execute(select(vod).where(vod.c.session_id == session_id))).one()

    return await db.run(unit, kind=Kind.READ)


async def _job(db: Database, vod_id: int, kind: str = "build") -> object:
    async def unit(conn: AsyncConnection) -> object:
        query = select(vod_job).where(vod_job.c.vod_id == vod_id, vod_job.c.kind == kind)
        return (await conn.execute(query)).one()

    return await db.run(unit, kind=Kind.READ)


async def test_ending_a_session_makes_one_vod_and_one_job(
    db: Database, storage: LocalStorage, media: Media, channel: Channel, hooks: SessionHooks
) -> None:
    """The end transaction creates the VOD (processing) and its job; a second try adds none."""
    recorded = await record_session(db, storage, media, channel.id, title="Friday jam")
    await end_session(db, recorded.session_id, hooks)
    row = await _vod_row(db, recorded.session_id)
    assert row.status == "processing"  # type: ignore[attr-defined]
    assert row.title.startswith("Friday jam · ")  # type: ignore[attr-defined]
    assert row.owner_id == channel.owner_id  # type: ignore[attr-defined]
    assert (await _job(db, row.id)).state == "pending"  # type: ignore[attr-defined]
    await end_session(db, recorded.session_id, hooks)  # e.g. a replayed end
    assert await count(db, vod) == 1
    assert await count(db, vod_job) == 1


async def test_the_build_lists_every_archived_segment_with_discontinuity_and_maps(
    db: Database,
    storage: LocalStorage,
    media: Media,
    channel: Channel,
    worker: VodWorker,
    recorded: Recorded,
) -> None:
    """The VOD is ready; each rendition playlist parses and lists every segment, none lost."""
    assert await drain(worker) == 1
    row = await _vod_row(db, recorded.session_id)
    assert row.status == "ready", row.failure_reason  # type: ignore[attr-defined]
    window = Settings.model_fields["live_window_segments"].default
    for name, _, _ in RENDITIONS:
        assert media.segment_count(name) > 2 * window  # far more than the live playlist kept
        text = (
            await storage.read(f"{channel.id}/{recorded.session_id}/{name}/{PLAYLIST}")
        ).decode()
        playlist = m3u8.loads(text)
        assert playlist.playlist_type == "vod"
        assert playlist.is_endlist
        assert len(playlist.segments) == media.segment_count(name)
        expected = [p.rsplit("/", 1)[1] for p in recorded.paths if f"/{name}/" in p]
        assert [s.uri for s in playlist.segments] == expected
        flagged = [i for i, s in enumerate(playlist.segments) if s.discontinuity]
        assert flagged == [len(media.clips[(name, 0)].segments)]
        assert {s.init_section.uri for s in playlist.segments} == {"init-0.mp4", "init-1.mp4"}
        assert text.count("#EXT-X-MAP") == 2
    assert row.byte_size == sum(  # type: ignore[attr-defined]
        storage.resolve(p).stat().st_size for p in recorded.paths
    ) + sum(len(c.init) for c in media.clips.values())
    seconds = sum(s for c in media.clips.values() for _, s in c.segments) / len(RENDITIONS)
    assert row.duration == pytest.approx(seconds)  # type: ignore[attr-defined]


async def test_the_master_has_real_codecs_bandwidth_and_resolution(
    storage: LocalStorage, media: Media, channel: Channel, worker: VodWorker, recorded: Recorded
) -> None:
    """Every rendition is a variant with its codecs, resolution and a measured peak bit rate."""
    await drain(worker)
    text = await storage.read(session_path(channel.id, recorded.session_id, MASTER))
    master = m3u8.loads(text.decode())
    variants = {p.uri: p.stream_info for p in master.playlists}
    assert set(variants) == {f"{name}/{PLAYLIST}" for name, _, _ in RENDITIONS}
    for name, width, height in RENDITIONS:
        info = variants[f"{name}/{PLAYLIST}"]
        assert info.codecs == media.info[name].codecs
        assert info.resolution == (width, height)
        peak = max(8 * len(d) / s for e in range(2) for d, s in media.clips[(name, e)].segments)
        assert info.bandwidth == pytest.approx(peak, rel=0.01)
        assert 0 < info.average_bandwidth <= info.bandwidth
    assert master.playlists[0].stream_info.resolution == (640, 360)  # highest first


async def test_the_thumbnail_is_a_jpeg(
    db: Database, storage: LocalStorage, media: Media, worker: VodWorker, recorded: Recorded
) -> None:
    """ffmpeg grabs a frame from the archive into a JPEG beside the media."""
    await drain(worker)
    row = await _vod_row(db, recorded.session_id)
    jpeg = await storage.read(row.thumbnail_path)  # type: ignore[attr-defined]
    assert jpeg[:3] == b"\xff\xd8\xff"
    assert len(jpeg) > 1000


async def _until_settled(worker: VodWorker, db: Database, vod_id: int) -> object:
    """Run the worker until the build job is no longer pending or running (bounded)."""
    async with asyncio.timeout(20):
        while True:
            await worker.run_once()
            job = await _job(db, vod_id)
            if job.state not in ("pending", "running"):  # type: ignore[attr-defined]
                return job
            await asyncio.sleep(0.02)


async def test_a_failing_build_is_retried_a_bounded_number_of_times_then_failed(
    db: Database,
    storage: LocalStorage,
    media: Media,
    channel: Channel,
    hooks: SessionHooks,
    worker: VodWorker,
) -> None:
    """A missing segment file fails every attempt; after the last one the VOD is failed."""
    recorded = await record_session(db, storage, media, channel.id)
    lost = recorded.paths[3]
    storage.resolve(lost).unlink()
    await end_session(db, recorded.session_id, hooks)
    vod_id = (await _vod_row(db, recorded.session_id)).id  # type: ignore[attr-defined]
    job = await _until_settled(worker, db, vod_id)
    assert job.state == "failed"  # type: ignore[attr-defined]
    assert job.attempts == POLICY.attempts  # type: ignore[attr-defined]
    row = await _vod_row(db, recorded.session_id)
    assert row.status == "failed"  # type: ignore[attr-defined]
    assert f"missing file {lost}" in row.failure_reason  # type: ignore[attr-defined]

    async def totals(conn: AsyncConnection) -> tuple[int, int]:
        return (
            await counters.total(conn, "owner", channel.owner_id, ["failed"]),
            await counters.total(conn, "owner", channel.owner_id, ["processing"]),
        )

    assert await db.run(totals, kind=Kind.READ) == (1, 0)


async def test_the_sweep_creates_missing_vods_once_and_skips_empty_sessions(
    db: Database, storage: LocalStorage, media: Media, channel: Channel, worker: VodWorker
) -> None:
    """Sessions ended without the hook get their VOD from the sweep; nothing twice."""
    recorded = await record_session(db, storage, media, channel.id)
    await end_session(db, recorded.session_id, None)
    empty = await record_session(db, storage, media, channel.id, epochs=0)
    await end_session(db, empty.session_id, None)
    assert await count(db, vod) == 0
    assert await worker.sweep() == 1
    assert await worker.sweep() == 0
    assert await count(db, vod) == 1
    await drain(worker)
    assert (await _vod_row(db, recorded.session_id)).status == "ready"  # type: ignore[attr-defined]


async def test_the_sweep_floor_only_skips_sessions_that_had_ended(
    db: Database, storage: LocalStorage, media: Media, channel: Channel, worker: VodWorker
) -> None:
    """A session still active at one sweep is looked at by the next one."""
    early = await record_session(db, storage, media, channel.id, epochs=1)
    await end_session(db, early.session_id, None)
    other = await make_channel(db, "bob")
    active = await record_session(db, storage, media, other.id, epochs=1)
    floor = await jobs.sweep_floor(db)
    assert floor == active.session_id - 1
    await end_session(db, active.session_id, None)
    assert await worker.sweep(floor) == 1  # the active one, now ended
    assert await worker.sweep(0) == 1  # the early one, found by a full pass


async def test_an_expired_lease_is_taken_over_and_the_stale_claim_is_fenced(
    db: Database, worker: VodWorker, recorded: Recorded
) -> None:
    """A job whose worker died runs again after its lease; the dead worker cannot finish it."""
    [stale] = await jobs.claim(db, POLICY)

    async def expire(conn: AsyncConnection) -> None:
        past = utcnow() - timedelta(seconds=1)
        await conn.execute(update(vod_job).values(due_at=past))

    assert await drain(worker) == 0  # leased: nobody else may take it yet
    await db.run(expire, kind=Kind.WRITE)
    assert await drain(worker) == 1
    job = await _job(db, stale.vod_id)
    assert (job.state, job.attempts) == ("done", 2)  # type: ignore[attr-defined]
    assert not await jobs.succeed(db, stale)
    assert await jobs.fail(db, stale, "late", POLICY) == "lost"
    assert (await _vod_row(db, recorded.session_id)).status == "ready"  # type: ignore[attr-defined]


async def test_a_released_job_is_due_again_with_its_attempt_given_back(
    db: Database, recorded: Recorded
) -> None:
    """A clean shutdown hands held jobs back: pending, due now, attempt not counted."""
    [held] = await jobs.claim(db, POLICY)
    await jobs.release(db, held)
    job = await _job(db, held.vod_id)
    assert (job.state, job.attempts) == ("pending", 0)  # type: ignore[attr-defined]
    assert [c.job_id for c in await jobs.claim(db, POLICY)] == [held.job_id]


async def test_a_deleted_vod_is_purged_later_and_never_recreated(
    db: Database, storage: LocalStorage, channel: Channel, worker: VodWorker, recorded: Recorded
) -> None:
    """The purge job removes the files and archive rows; the tombstone stops the sweep."""
    from stagecast.auth.service import list_accounts

    await drain(worker)
    vod_id = (await _vod_row(db, recorded.session_id)).id  # type: ignore[attr-defined]
    [owner] = [a for a in await list_accounts(db) if a.id == channel.owner_id]
    await service.delete_vod(db, owner, vod_id, purge_after=0)
    assert await drain(worker) == 1
    assert not storage.resolve(f"{channel.id}/{recorded.session_id}").exists()
    assert await count(db, segment, segment.c.session_id == recorded.session_id) == 0
    assert await scalar(db, select(vod.c.purged_at).where(vod.c.id == vod_id)) is not None
    assert (await _job(db, vod_id, "purge")).state == "done"  # type: ignore[attr-defined]
    assert await worker.sweep() == 0


async def test_a_ready_vod_is_announced_on_the_bus_after_commit(
    db: Database, storage: LocalStorage, channel: Channel, recorded: Recorded
) -> None:
    """When the build commits, ``vod.ready`` goes out on ``vod.<channel_id>`` with the VOD id."""
    from stagecast.bus import MemoryBus
    from stagecast.vod.worker import VodWorker

    bus = MemoryBus()
    subscription = await bus.subscribe(f"vod.{channel.id}")
    announcing = VodWorker(db, storage, make_worker(db, storage).config, bus)
    assert await drain(announcing) == 1
    assert announcing.stats.built == 1  # counted for /metrics
    assert announcing.stats.running == 0
    row = await _vod_row(db, recorded.session_id)
    message = await subscription.get(timeout=2)
    assert message == {
        "type": "vod.ready",
        "vod_id": row.id,  # type: ignore[attr-defined]
        "session_id": recorded.session_id,
        "channel_id": channel.id,
        "duration": pytest.approx(row.duration),  # type: ignore[attr-defined]
    }


def test_retry_delays_double_up_to_the_cap_with_full_jitter() -> None:
    """Each wait is drawn from [0, min(cap, base * 2^(n-1))], the whole window used."""
    policy = Policy(retry_base=10, retry_cap=60)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert min(delays) < ceiling / 4
        assert max(delays) > ceiling * 3 / 4
