"""Send webhook deliveries (signed, retried with capped backoff) and read their log.

Workers ``claim`` due deliveries with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL
(SQLite serializes writers, so the same statement is safe there) and lease them; a delivery
whose worker died is taken again when its lease lapses. Each attempt is logged in
``webhook_attempt``; its outcome is fenced by the attempt number, so a worker that lost its
lease cannot overwrite the next one's result. A 2xx answer delivers; anything else (another
status, a timeout, a refused address) is retried after ``min(cap, base * 2^(n-1))`` seconds,
with up to half of that taken off at random so a receiver that was down is not hit by every
retry at once, until ``attempts`` attempts have failed.

SSRF care: only http and https; the host name is resolved before each attempt and, unless
``webhook_allow_private`` is set, every address must be public; redirects are not followed;
the whole attempt has a timeout; the response body is never read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast import __version__
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.metrics.models import webhook, webhook_attempt, webhook_delivery
from stagecast.metrics.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    is_public_address,
    signature,
)

log = logging.getLogger(__name__)

_DUE = ("pending", "delivering")
_ERROR_MAX = 300


@dataclass(frozen=True)
class Policy:
    """How deliveries are tried (seconds)."""

    attempts: int = 8
    retry_base: float = 10.0
    retry_cap: float = 3600.0
    timeout: float = 5.0
    allow_private: bool = False

    @property
    def lease(self) -> float:
        """Return how long a claim lasts: long enough for one attempt and its bookkeeping."""
        return self.timeout * 2 + 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the wait after failed attempt ``attempt`` (1-based): capped, half jittered."""
        ceiling = float(min(self.retry_cap, self.retry_base * 2 ** (attempt - 1)))
        jitter: float = (rng or random).uniform(0, ceiling / 2)
        return ceiling - jitter


@dataclass(frozen=True)
class Claimed:
    """A delivery a worker holds for one attempt."""

    id: int
    webhook_id: int
    url: str
    secret: str
    event: str
    attempt: int
    body: bytes


@dataclass(frozen=True)
class Outcome:
    """What one attempt got back."""

    status: int | None
    error: str | None
    seconds: float

    @property
    def delivered(self) -> bool:
        """Tell whether the receiver accepted the delivery (any 2xx)."""
        return self.status is not None and 200 <= self.status < 300


def _body(delivery_id: int, payload: str) -> bytes:
    """Return the request body: the stored payload with the delivery id first (stable)."""
    return json.dumps({"id": delivery_id, **json.loads(payload)}, separators=(",", ":")).encode()


async def claim(db: Database, policy: Policy, *, limit: int = 10) -> list[Claimed]:
    """Take up to ``limit`` due deliveries (pending, or delivering with a lapsed lease).

    A delivery whose workers kept dying is failed here once its attempts are used up.
    """

    async def unit(conn: AsyncConnection) -> list[Claimed]:
        now = utcnow()
        rows = (
            await conn.execute(
                select(
                    webhook_delivery.c.id,
                    webhook_delivery.c.webhook_id,
                    webhook_delivery.c.event,
                    webhook_delivery.c.payload,
                    webhook_delivery.c.attempts,
                )
                .where(
                    webhook_delivery.c.state.in_(_DUE), webhook_delivery.c.next_attempt_at <= now
                )
                .order_by(webhook_delivery.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not rows:
            return []
        hooks = {
            r.id: r
            for r in await conn.execute(
                select(webhook.c.id, webhook.c.url, webhook.c.secret).where(
                    webhook.c.id.in_({r.webhook_id for r in rows})
                )
            )
        }
        claimed = []
        for row in rows:
            hook = hooks.get(row.webhook_id)
            if hook is None:  # the webhook was deleted meanwhile (its rows go with it)
                continue
            if row.attempts >= policy.attempts:
                await _close(conn, row.id, "failed", now, error="gave up (the worker stopped)")
                continue
            await conn.execute(
                update(webhook_delivery)
                .where(webhook_delivery.c.id == row.id)
                .values(
                    state="delivering",
                    attempts=row.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=policy.lease),
                )
            )
            claimed.append(
                Claimed(
                    row.id,
                    row.webhook_id,
                    hook.url,
                    hook.secret,
                    row.event,
                    row.attempts + 1,
                    _body(row.id, row.payload),
                )
            )
        return claimed

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="claim_deliveries")


async def _close(
    conn: AsyncConnection,
    delivery_id: int,
    state: str,
    now: datetime,
    *,
    status: int | None = None,
    error: str | None = None,
) -> None:
    await conn.execute(
        update(webhook_delivery)
        .where(webhook_delivery.c.id == delivery_id)
        .values(state=state, finished_at=now, last_status=status, last_error=error)
    )


async def record(db: Database, held: Claimed, outcome: Outcome, policy: Policy) -> str:
    """Log the attempt and move the delivery on; return its state ("lost" if not ours)."""
    error = outcome.error[:_ERROR_MAX] if outcome.error else None
    now = utcnow()

    async def unit(conn: AsyncConnection) -> str:
        row = (
            await conn.execute(
                select(webhook_delivery.c.id)
                .where(
                    webhook_delivery.c.id == held.id,
                    webhook_delivery.c.state == "delivering",
                    webhook_delivery.c.attempts == held.attempt,
                )
                .with_for_update()
            )
        ).first()
        if row is None:
            return "lost"
        await conn.execute(
            insert(webhook_attempt).values(
                delivery_id=held.id,
                attempt=held.attempt,
                attempted_at=now,
                status=outcome.status,
                error=error,
                duration_ms=int(outcome.seconds * 1000),
            )
        )
        if outcome.delivered:
            await _close(conn, held.id, "delivered", now, status=outcome.status)
            return "delivered"
        if held.attempt >= policy.attempts:
            await _close(conn, held.id, "failed", now, status=outcome.status, error=error)
            return "failed"
        await conn.execute(
            update(webhook_delivery)
            .where(webhook_delivery.c.id == held.id)
            .values(
                state="pending",
                next_attempt_at=now + timedelta(seconds=policy.delay(held.attempt)),
                last_status=outcome.status,
                last_error=error,
            )
        )
        return "pending"

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="record_delivery")


async def _refusal(url: str, allow_private: bool) -> str | None:
    """Return why ``url`` may not be called now (a scheme or a private address), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "only http and https URLs are called"
    if allow_private:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except (OSError, ValueError) as exc:  # ValueError: a host name IDNA cannot encode
        return f"cannot resolve {parts.hostname}: {getattr(exc, 'strerror', None) or exc}"
    for info in infos:
        if not is_public_address(str(info[4][0])):
            return f"{parts.hostname} resolves to a non-public address"
    return None


async def send(client: httpx.AsyncClient, held: Claimed, policy: Policy) -> Outcome:
    """Make one signed attempt; never raises for network trouble (it is in the outcome)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(policy.timeout):
            refused = await _refusal(held.url, policy.allow_private)
            if refused is not None:
                return Outcome(None, refused, time.perf_counter() - started)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": f"Stagecast-Webhooks/{__version__}",
                EVENT_HEADER: held.event,
                DELIVERY_HEADER: str(held.id),
                SIGNATURE_HEADER: signature(held.secret, held.body, int(time.time())),
            }
            request = client.build_request("POST", held.url, content=held.body, headers=headers)
            response = await client.send(request, stream=True)
            await response.aclose()  # the body is of no interest and may be large
    except TimeoutError:
        return Outcome(None, f"no answer within {policy.timeout:g} s", policy.timeout)
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    return Outcome(response.status_code, None, time.perf_counter() - started)


# -- the delivery log ------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptRecord:
    """One try of a delivery."""

    attempt: int
    attempted_at: datetime
    status: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery and every attempt made so far."""

    id: int
    event: str
    state: str
    attempts: int
    next_attempt_at: datetime | None  # None once delivered or failed
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: tuple[AttemptRecord, ...]


async def deliveries(
    db: Database, webhook_id: int, *, before_id: int | None = None, limit: int = 50
) -> tuple[list[DeliveryRecord], bool]:
    """Return a webhook's deliveries newest first, before ``before_id``, and whether more exist.

    Keyset over ``(webhook_id, id)``; the attempts of the page come in one more query.
    """

    async def unit(conn: AsyncConnection) -> tuple[list[DeliveryRecord], bool]:
        query = select(webhook_delivery).where(webhook_delivery.c.webhook_id == webhook_id)
        if before_id is not None:
            query = query.where(webhook_delivery.c.id < before_id)
        rows = (
            await conn.execute(query.order_by(webhook_delivery.c.id.desc()).limit(limit + 1))
        ).all()
        page = rows[:limit]
        log: dict[int, list[AttemptRecord]] = {r.id: [] for r in page}
        if page:
            attempts = await conn.execute(
                select(webhook_attempt)
                .where(webhook_attempt.c.delivery_id.in_(list(log)))
                .order_by(webhook_attempt.c.delivery_id, webhook_attempt.c.attempt)
            )
            for a in attempts:
                log[a.delivery_id].append(
                    AttemptRecord(a.attempt, a.attempted_at, a.status, a.error, a.duration_ms)
                )
        found = [
            DeliveryRecord(
                r.id,
                r.event,
                r.state,
                r.attempts,
                r.next_attempt_at if r.state in ("pending", "delivering") else None,
                r.last_status,
                r.last_error,
                r.created_at,
                r.finished_at,
                tuple(log[r.id]),
            )
            for r in page
        ]
        return found, len(rows) > limit

    return await db.run(unit, kind=Kind.READ, name="webhook_deliveries")
