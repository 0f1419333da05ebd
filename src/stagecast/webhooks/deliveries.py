"""Send webhook deliveries (signed, retried with capped backoff) and read their log.

``webhook_delivery`` is a ``stagecast.db.leases`` queue: workers ``claim`` due deliveries
under a lease, and a delivery whose worker died is taken again when its lease lapses. Each
attempt is logged in ``webhook_attempt``; its outcome is fenced by the attempt number, so a
worker that lost its lease cannot overwrite the next one's result. A 2xx answer delivers;
anything else (another status, a timeout, a refused address) is retried after
``min(cap, base * 2^(n-1))`` seconds, with up to half of that taken off at random so a receiver
that was down is not hit by every retry at once, until ``attempts`` attempts have failed.

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
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast import __version__, backoff
from stagecast.db import Database, Kind
from stagecast.db.leases import JobQueue
from stagecast.db.schema import Record, utcnow
from stagecast.webhooks.models import webhook, webhook_attempt, webhook_delivery
from stagecast.webhooks.service import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    is_public_address,
    signature,
)

log = logging.getLogger(__name__)

_ERROR_MAX = 300
QUEUE = JobQueue(
    webhook_delivery,
    due=webhook_delivery.c.next_attempt_at,
    running="delivering",
    finished=webhook_delivery.c.finished_at,
)
# A claim reads the delivery and, in the same query, its webhook's URL and secret; a delivery
# whose webhook was deleted meanwhile has no match and is not taken (its rows go with it).
_CLAIMED = (
    webhook_delivery.c.webhook_id,
    webhook_delivery.c.event,
    webhook_delivery.c.payload,
    webhook.c.url,
    webhook.c.secret,
)
_WITH_WEBHOOK = webhook_delivery.join(webhook, webhook.c.id == webhook_delivery.c.webhook_id)


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
        # Never under half the ceiling: a receiver that is down is promised that much time to
        # recover, and its delivery log shows the retries further and further apart.
        ceiling = backoff.ceiling(attempt, self.retry_base, self.retry_cap)
        return backoff.delay(attempt, self.retry_base, self.retry_cap, rng, floor=ceiling / 2)


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
        taken = await QUEUE.claim(
            conn,
            limit=limit,
            lease=policy.lease,
            max_attempts=policy.attempts,
            columns=_CLAIMED,
            source=_WITH_WEBHOOK,
        )
        for row in taken.exhausted:
            error = "gave up (the worker stopped)"
            await QUEUE.close(conn, row.id, "failed", last_status=None, last_error=error)
        return [_claimed(c.row, c.attempt) for c in taken.held]

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="claim_deliveries")


def _claimed(row: Record, attempt: int) -> Claimed:
    body = _body(row.id, row.payload)
    return Claimed(row.id, row.webhook_id, row.url, row.secret, row.event, attempt, body)


async def record(db: Database, held: Claimed, outcome: Outcome, policy: Policy) -> str:
    """Log the attempt and move the delivery on; return its state ("lost" if not ours)."""
    error = outcome.error[:_ERROR_MAX] if outcome.error else None
    now = utcnow()

    async def unit(conn: AsyncConnection) -> str:
        if not await QUEUE.holds(conn, held.id, held.attempt):
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
            await QUEUE.close(
                conn, held.id, "delivered", last_status=outcome.status, last_error=None
            )
            return "delivered"
        if held.attempt >= policy.attempts:
            await QUEUE.close(conn, held.id, "failed", last_status=outcome.status, last_error=error)
            return "failed"
        delay = policy.delay(held.attempt)
        await QUEUE.retry(conn, held.id, delay, last_status=outcome.status, last_error=error)
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
