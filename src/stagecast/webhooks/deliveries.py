"""Send webhook deliveries (signed, retried with capped backoff) and read their log.

``webhook_delivery`` is a ``stagecast.db.leases`` queue: workers ``claim`` due deliveries
under a lease, and a delivery whose worker died is taken again when its lease lapses. Each
attempt is logged in ``webhook_attempt``; its outcome is fenced by the attempt number, so a
worker that lost its lease cannot overwrite the next one's result. A 2xx answer delivers;
anything else (another status, a timeout, a refused address) is retried after
``min(cap, base * 2^(n-1))`` seconds, with up to half of that taken off at random so a receiver
that was down is not hit by every retry at once, until ``attempts`` attempts have failed.

SSRF care: only http and https; the host name is resolved once before each attempt and,
unless ``webhook_allow_private`` is set, every address it has must be public (IPv4 carried in
IPv6 judged as IPv4); the attempt then connects to the address that was checked — never to a
second lookup a rebinding name server could answer differently — with the name in the
``Host`` header and as the TLS server name (the certificate is verified against it);
redirects are not followed; the whole attempt has a timeout; the response body is never read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
import socket
import time
from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: the URL with the checked address, and the name it had."""

    url: httpx.URL
    host_header: str | None  # None when the URL named an IP itself
    server_name: str | None  # TLS SNI and certificate name (https with a host name)


class Refused(Exception):
    """A URL that may not be called now (its scheme, or the addresses its name has)."""


async def target(url: str, allow_private: bool) -> Target:
    """Resolve ``url``'s host once and return where to connect; raise Refused if it may not.

    Unless ``allow_private``, every address of the name must be public; the first is used.
    """
    try:
        parsed = httpx.URL(url)
        name = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError) as exc:  # a host IDNA cannot encode
        raise Refused(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not name:
        raise Refused("only http and https URLs are called")
    if _is_ip(parsed.host):
        if not allow_private and not is_public_address(parsed.host):
            raise Refused(f"{parsed.host} is a non-public address")
        return Target(parsed, None, None)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused(f"cannot resolve {name}: {getattr(exc, 'strerror', None) or exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise Refused(f"cannot resolve {name}")
    if not allow_private and not all(is_public_address(a) for a in addresses):
        raise Refused(f"{name} resolves to a non-public address")
    host_header = name if parsed.port is None else f"{name}:{parsed.port}"
    sni = name if parsed.scheme == "https" else None
    return Target(parsed.copy_with(host=addresses[0]), host_header, sni)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def send(client: httpx.AsyncClient, held: Claimed, policy: Policy) -> Outcome:
    """Make one signed attempt; never raises for network trouble (it is in the outcome)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(policy.timeout):
            try:
                where = await target(held.url, policy.allow_private)
            except Refused as exc:
                return Outcome(None, str(exc), time.perf_counter() - started)
            response = await client.send(_request(client, held, where), stream=True)
            await response.aclose()  # the body is of no interest and may be large
    except TimeoutError:
        return Outcome(None, f"no answer within {policy.timeout:g} s", policy.timeout)
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    return Outcome(response.status_code, None, time.perf_counter() - started)


def _request(client: httpx.AsyncClient, held: Claimed, where: Target) -> httpx.Request:
    """Build the signed POST of ``held`` to the checked address of ``where``."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Stagecast-Webhooks/{__version__}",
        EVENT_HEADER: held.event,
        DELIVERY_HEADER: str(held.id),
        SIGNATURE_HEADER: signature(held.secret, held.body, int(time.time())),
    }
    if where.host_header is not None:
        headers["Host"] = where.host_header
    extensions = {"sni_hostname": where.server_name} if where.server_name else None
    return client.build_request(
        "POST", where.url, content=held.body, headers=headers, extensions=extensions
    )


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
