"""Durable VOD jobs: made with the session end, claimed by one worker, retried a bounded number.

``create_for_session`` runs inside the transaction that ends a session (a ``SessionHooks``
hook): the VOD row (``processing``), its counters and its build job commit with the end or not
at all, at most once per session (unique ``vod.session_id``). ``vod_job`` is a
``stagecast.db.leases`` queue: workers ``claim`` due jobs under a lease (a job whose worker died
is taken over when its lease runs out), and every outcome is fenced by the attempt number, so a
worker that lost its lease cannot overwrite the new holder's result. Failed attempts are retried
after capped exponential backoff with full jitter. ``sweep_batch`` is the safety net for
sessions that ended without the hook (an older process, a manual fix): it creates what is
missing.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast import backoff
from stagecast.channels.models import channel
from stagecast.db import Database, Kind
from stagecast.db.leases import JobQueue
from stagecast.db.schema import utcnow
from stagecast.db.upsert import insert_or_ignore
from stagecast.live.hooks import EndedSession
from stagecast.live.models import live_session, segment
from stagecast.vod import counters
from stagecast.vod.models import vod, vod_job

log = logging.getLogger(__name__)

_REASON_MAX = 500
QUEUE = JobQueue(
    vod_job, due=vod_job.c.due_at, touched=vod_job.c.updated_at, finished=vod_job.c.finished_at
)


@dataclass(frozen=True)
class Policy:
    """How often a job is tried and how long a worker may hold it (seconds)."""

    attempts: int = 5
    retry_base: float = 10.0
    retry_cap: float = 600.0
    lease: float = 600.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the wait before the attempt after ``attempt`` (capped, fully jittered)."""
        return backoff.delay(attempt, self.retry_base, self.retry_cap, rng)


@dataclass(frozen=True)
class Claim:
    """A job a worker holds: ``attempt`` fences everything it writes back."""

    job_id: int
    vod_id: int
    kind: str
    attempt: int


def default_title(ended: EndedSession) -> str:
    """Return the session's title and start time, e.g. ``My show · 2024-05-01 18:00 UTC``."""
    when = (ended.started_at or ended.ended_at).strftime("%Y-%m-%d %H:%M UTC")
    suffix = f" · {when}"
    return (ended.title.strip() or "Recording")[: 140 - len(suffix)] + suffix


async def enqueue(conn: AsyncConnection, vod_id: int, kind: str, *, due_at: datetime) -> None:
    """Create the ``kind`` job of ``vod_id`` unless it exists (in the caller's transaction)."""
    now = utcnow()
    row = {
        "vod_id": vod_id,
        "kind": kind,
        "state": "pending",
        "attempts": 0,
        "due_at": due_at,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(insert_or_ignore(conn, vod_job, row, on="uq_vod_job_vod_id_kind"))


async def create_for_session(conn: AsyncConnection, ended: EndedSession) -> int | None:
    """Create the VOD of an ended session and its build job; return its id.

    Returns None when the session already has one or recorded no segment at all. Runs in the
    caller's transaction (the session end), so it is atomic with it.
    """
    recorded = await conn.execute(
        select(segment.c.id).where(segment.c.session_id == ended.session_id).limit(1)
    )
    if recorded.first() is None:
        return None
    owner_id = (
        await conn.execute(select(channel.c.owner_id).where(channel.c.id == ended.channel_id))
    ).scalar_one()
    now = utcnow()
    row = {
        "session_id": ended.session_id,
        "channel_id": ended.channel_id,
        "owner_id": owner_id,
        "title": default_title(ended),
        "description": "",
        "visibility": "inherit",
        "status": "processing",
        "started_at": ended.started_at,
        "ended_at": ended.ended_at,
        "created_at": now,
        "updated_at": now,
    }
    inserted = await conn.execute(
        insert_or_ignore(conn, vod, row, on="uq_vod_session_id").returning(vod.c.id)
    )
    vod_id = inserted.scalar_one_or_none()
    if vod_id is None:
        return None
    await counters.move(
        conn, owner_id=owner_id, channel_id=ended.channel_id, old=None, new="processing"
    )
    await enqueue(conn, vod_id, "build", due_at=now)
    return int(vod_id)


async def on_session_ended(conn: AsyncConnection, ended: EndedSession) -> None:
    """The ``SessionHooks.on_ended`` hook: make the session's VOD with its end."""
    vod_id = await create_for_session(conn, ended)
    if vod_id is not None:
        log.info("vod %d queued for session %d", vod_id, ended.session_id)


async def set_status(conn: AsyncConnection, vod_id: int, status: str, **values: Any) -> bool:
    """Move a live VOD to ``status`` (with ``values``), keeping the counters exact.

    Returns False, changing nothing, if the VOD is deleted (it is no longer counted).
    """
    row = (
        await conn.execute(
            select(vod.c.status, vod.c.owner_id, vod.c.channel_id)
            .where(vod.c.id == vod_id, vod.c.deleted_at.is_(None))
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        return False
    await conn.execute(
        update(vod).where(vod.c.id == vod_id).values(status=status, updated_at=utcnow(), **values)
    )
    await counters.move(
        conn, owner_id=row.owner_id, channel_id=row.channel_id, old=row.status, new=status
    )
    return True


async def claim(db: Database, policy: Policy, *, limit: int = 1) -> list[Claim]:
    """Take up to ``limit`` due jobs (pending, or running with an expired lease).

    A job that has used all its attempts (its workers kept dying) is failed here instead.
    """

    async def unit(conn: AsyncConnection) -> list[Claim]:
        taken = await QUEUE.claim(
            conn,
            limit=limit,
            lease=policy.lease,
            max_attempts=policy.attempts,
            columns=(vod_job.c.vod_id, vod_job.c.kind),
        )
        for row in taken.exhausted:
            reason = f"gave up after {row.attempts} attempts (the worker stopped)"
            await finish(conn, row.id, row.vod_id, row.kind, "failed", reason)
        return [Claim(c.row.id, c.row.vod_id, c.row.kind, c.attempt) for c in taken.held]

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="vod_claim")


async def holds(conn: AsyncConnection, held: Claim) -> bool:
    """Lock the job if ``held`` still owns it (same attempt, still running)."""
    return await QUEUE.holds(conn, held.job_id, held.attempt)


async def finish(
    conn: AsyncConnection, job_id: int, vod_id: int, kind: str, state: str, reason: str | None
) -> None:
    """Close a job as ``state`` (a failed build fails its VOD with ``reason``)."""
    if state == "failed" and kind == "build":
        await set_status(conn, vod_id, "failed", failure_reason=reason)
    values = {} if reason is None else {"last_error": reason}
    await QUEUE.close(conn, job_id, state, **values)


async def succeed(db: Database, held: Claim, **values: Any) -> bool:
    """Record a finished job; a build marks its VOD ``ready`` with ``values``.

    Returns False if the claim was lost (another worker holds the job now).
    """

    async def unit(conn: AsyncConnection) -> bool:
        if not await holds(conn, held):
            return False
        if held.kind == "build":
            done = await set_status(conn, held.vod_id, "ready", failure_reason=None, **values)
        else:
            done = True
        await finish(
            conn, held.job_id, held.vod_id, held.kind, "done" if done else "cancelled", None
        )
        return True

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="vod_job_done")


async def fail(
    db: Database, held: Claim, reason: str, policy: Policy, *, permanent: bool = False
) -> str:
    """Record a failed attempt: retry later with backoff, or fail for good. Return the state.

    After ``policy.attempts`` attempts (or at once if ``permanent``) the job is ``failed`` and a
    build's VOD is ``failed`` with ``reason``. Returns "lost" if the claim was lost.
    """
    reason = reason[:_REASON_MAX]

    async def unit(conn: AsyncConnection) -> str:
        if not await holds(conn, held):
            return "lost"
        if permanent or held.attempt >= policy.attempts:
            await finish(conn, held.job_id, held.vod_id, held.kind, "failed", reason)
            return "failed"
        await QUEUE.retry(conn, held.job_id, policy.delay(held.attempt), last_error=reason)
        return "pending"

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="vod_job_failed")


async def release(db: Database, held: Claim) -> None:
    """Give a job back untried (clean shutdown): due now, the attempt not counted."""

    async def unit(conn: AsyncConnection) -> None:
        await QUEUE.release(conn, held.job_id, held.attempt)

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="vod_job_release", deadline=2.0)


async def sweep_floor(db: Database) -> int:
    """Return a session id below which every session has ended (where the next sweep starts).

    Any session that ends after this call has a larger id: it was active (or did not exist).
    """

    async def unit(conn: AsyncConnection) -> int:
        top = (await conn.execute(select(func.max(live_session.c.id)))).scalar_one_or_none()
        active = (
            await conn.execute(
                select(func.min(live_session.c.id)).where(
                    live_session.c.state != literal_column("'ended'")
                )
            )
        ).scalar_one_or_none()
        return int(active) - 1 if active is not None else int(top or 0)

    return await db.run(unit, kind=Kind.READ, name="vod_sweep_floor")


async def sweep_batch(db: Database, after_id: int, *, batch: int = 500) -> tuple[int, int | None]:
    """Create the missing VODs of ended sessions among the next ``batch`` ids after ``after_id``.

    Returns how many were created and the last id looked at (None: no sessions left). Reads a
    bounded primary-key range per call, whatever the size of the table.
    """

    async def unit(conn: AsyncConnection) -> tuple[int, int | None]:
        ids = (
            select(live_session.c.id)
            .where(live_session.c.id > after_id)
            .order_by(live_session.c.id)
            .limit(batch)
            .subquery()
        )
        upper = (await conn.execute(select(func.max(ids.c.id)))).scalar_one_or_none()
        if upper is None:
            return 0, None
        rows = await conn.execute(
            select(live_session).where(
                live_session.c.id > after_id,
                live_session.c.id <= upper,
                live_session.c.state == "ended",
                ~exists().where(vod.c.session_id == live_session.c.id),
            )
        )
        created = 0
        for row in rows.all():
            ended = EndedSession(
                row.id,
                row.channel_id,
                row.title,
                row.started_at,
                row.ended_at or utcnow(),
                row.end_reason or "swept",
            )
            if await create_for_session(conn, ended) is not None:
                created += 1
        return created, int(upper)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="vod_sweep", deadline=30)
