"""Purge soft-deleted VODs: their media files first, then the session's archive rows.

A delete hides a VOD at once and schedules a ``purge`` job for later (the delay is a grace
period for mistakes). The job removes the session's media directory, then, in one
transaction, its segment and init rows, and stamps the VOD ``purged_at``. The VOD row itself
stays as a tombstone, so the sweep never recreates it. Both steps are idempotent.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live.models import live_init, segment
from stagecast.live.storage import session_prefix
from stagecast.vod import jobs
from stagecast.vod.jobs import Claim
from stagecast.vod.models import vod


async def target(db: Database, vod_id: int) -> tuple[int, int] | None:
    """Return ``(channel_id, session_id)`` of a deleted, unpurged VOD; None otherwise."""

    async def unit(conn: AsyncConnection) -> tuple[int, int] | None:
        row = (
            await conn.execute(
                select(vod.c.channel_id, vod.c.session_id).where(
                    vod.c.id == vod_id, vod.c.deleted_at.is_not(None), vod.c.purged_at.is_(None)
                )
            )
        ).one_or_none()
        return (int(row.channel_id), int(row.session_id)) if row is not None else None

    return await db.run(unit, kind=Kind.READ, name="vod_purge_target")


def media_prefix(channel_id: int, session_id: int) -> str:
    """Return the storage directory of a session (built from ids only)."""
    return session_prefix(channel_id, session_id)


async def finish(db: Database, held: Claim, session_id: int) -> bool:
    """Delete the session's archive rows, stamp the VOD purged, close the job.

    Returns False if the claim was lost.
    """

    async def unit(conn: AsyncConnection) -> bool:
        if not await jobs.holds(conn, held):
            return False
        await conn.execute(delete(segment).where(segment.c.session_id == session_id))
        await conn.execute(delete(live_init).where(live_init.c.session_id == session_id))
        now = utcnow()
        await conn.execute(update(vod).where(vod.c.id == held.vod_id).values(purged_at=now))
        await jobs.finish(conn, held.job_id, held.vod_id, held.kind, "done", None)
        return True

    return await db.run(
        unit, kind=Kind.IDEMPOTENT_WRITE, name="vod_purge", deadline=60, attempt_timeout=20
    )
