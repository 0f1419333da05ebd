"""The session state machine in the database: conditional transitions, hooks, reconciliation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live import service
from stagecast.live.hooks import EndedSession, SessionHooks
from stagecast.live.models import live_session, segment
from stagecast.live.service import AlreadyLive, SegmentRecord


async def _channel(db: Database, slug: str = "show") -> int:
    owner = await accounts.create_account(db, f"owner-{slug}", "password123", "broadcaster")
    created, _ = await channels.create_channel(db, owner, slug)
    return created.id


async def _open(db: Database, channel_id: int, node: str = "n1") -> service.SessionRow:
    return await service.open_session(
        db,
        channel_id=channel_id,
        title="t",
        profile="passthrough",
        key_version=1,
        node=node,
    )


def _segment(session_id: int, sequence: int) -> SegmentRecord:
    return SegmentRecord(
        session_id,
        "source",
        sequence,
        0,
        False,
        2.0,
        1000,
        utcnow(),
        f"1/{session_id}/source/s{sequence}",
    )


async def _state(db: Database, session_id: int) -> str:
    async def unit(conn: AsyncConnection) -> str:
        return str(
            (
                await conn.execute(
                    select(live_session.c.state).where(live_session.c.id == session_id)
                )
            ).scalar_one()
        )

    return await db.run(unit, kind=Kind.READ)


async def test_first_segment_moves_idle_to_live(db: Database) -> None:
    """A new session starts idle and goes live with its first archived segment."""
    channel_id = await _channel(db)
    row = await _open(db, channel_id)
    assert row.state == "idle"
    assert await service.record_segment(db, _segment(row.id, 0))
    assert await _state(db, row.id) == "live"


async def test_second_publisher_is_refused(db: Database) -> None:
    """While a session is active on another node, a second publisher gets AlreadyLive."""
    channel_id = await _channel(db)
    await _open(db, channel_id, node="n1")
    with pytest.raises(AlreadyLive):
        await _open(db, channel_id, node="n2")


async def test_reconnect_claims_the_same_session(db: Database) -> None:
    """A publisher that comes back during the grace window continues the same session."""
    channel_id = await _channel(db)
    first = await _open(db, channel_id)
    await service.record_segment(db, _segment(first.id, 0))
    assert await service.disconnect(db, first.id, "n1")
    again = await _open(db, channel_id, node="n2")
    assert again.id == first.id
    assert again.resumed
    assert again.reconnects == 1
    assert await _state(db, first.id) == "live"


async def test_end_runs_hooks_in_the_same_transaction(db: Database) -> None:
    """Ending runs the end hooks once; a failing hook rolls the end back."""
    channel_id = await _channel(db)
    row = await _open(db, channel_id)
    seen: list[EndedSession] = []

    async def record(conn: AsyncConnection, ended: EndedSession) -> None:
        seen.append(ended)

    async def explode(conn: AsyncConnection, ended: EndedSession) -> None:
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError):
        await service.end_session(
            db, row.id, "x", SessionHooks(on_ended=[explode]), states=("idle",)
        )
    assert await _state(db, row.id) == "idle"
    ended = await service.end_session(
        db, row.id, "done", SessionHooks(on_ended=[record]), states=("idle",)
    )
    assert ended is not None
    assert seen == [ended]
    assert (
        await service.end_session(
            db, row.id, "again", SessionHooks(on_ended=[record]), states=("idle",)
        )
        is None
    )
    assert len(seen) == 1


async def test_a_late_segment_cannot_revive_an_ended_session(db: Database) -> None:
    """A segment that arrives after the end is refused and the session stays ended."""
    channel_id = await _channel(db)
    row = await _open(db, channel_id)
    await service.record_segment(db, _segment(row.id, 0))
    await service.end_session(db, row.id, "done", SessionHooks(), states=("live",))
    assert not await service.record_segment(db, _segment(row.id, 1))
    assert await _state(db, row.id) == "ended"

    async def count(conn: AsyncConnection) -> int:
        return len(
            (await conn.execute(select(segment.c.id).where(segment.c.session_id == row.id))).all()
        )

    assert await db.run(count, kind=Kind.READ) == 1


async def test_replayed_segment_is_stored_once(db: Database) -> None:
    """Recording the same segment twice (a retried write) leaves one row."""
    channel_id = await _channel(db)
    row = await _open(db, channel_id)
    for _ in range(2):
        assert await service.record_segment(db, _segment(row.id, 0))
    _, next_sequences = await service.resume_point(db, row.id)
    assert next_sequences == {"source": 1}


async def test_orphans_and_expiry(db: Database) -> None:
    """After a restart a node finds its active sessions; expired ones are listed for ending."""
    channel_id = await _channel(db)
    row = await _open(db, channel_id, node="n1")
    assert await service.orphaned_sessions(db, "n1") == [row.id]
    assert await service.orphaned_sessions(db, "n2") == []
    assert await service.disconnect(db, row.id, "n1")
    assert await service.expired_sessions(db, grace=30, stale_after=300) == []

    async def age(conn: AsyncConnection) -> None:
        await conn.execute(
            update(live_session)
            .where(live_session.c.id == row.id)
            .values(disconnected_at=utcnow() - timedelta(seconds=31))
        )

    await db.run(age, kind=Kind.WRITE)
    assert await service.expired_sessions(db, grace=30, stale_after=300) == [
        (row.id, "reconnecting")
    ]


async def test_channel_live_reports_the_active_session(db: Database) -> None:
    """The viewer lookup joins the channel with its active session only."""
    channel_id = await _channel(db, "viewme")
    assert (await service.channel_live(db, "viewme")).session_id is None  # type: ignore[union-attr]
    row = await _open(db, channel_id)
    found = await service.channel_live(db, "viewme")
    assert found is not None
    assert found.session_id == row.id
    assert found.state == "idle"
    await service.end_session(db, row.id, "done", SessionHooks(), states=("idle",))
    assert (await service.channel_live(db, "viewme")).session_id is None  # type: ignore[union-attr]
    assert await service.channel_live(db, "nope") is None
