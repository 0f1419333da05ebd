"""Webhooks: per-channel URLs told about ``stream.started``, ``stream.ended`` and ``vod.ready``.

An event becomes one durable ``webhook_delivery`` row per subscribed webhook, keyed by
``(webhook_id, event_key)`` so announcing the same event twice (two processes, a restart) is a
no-op. ``stagecast.webhooks.deliveries`` sends them.

Every request is a JSON ``POST`` signed with the webhook's secret::

    Stagecast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

Receivers recompute the HMAC over the raw body and reject a timestamp more than
``SIGNATURE_TOLERANCE`` seconds away from their clock (a replayed request carries an old one).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.channels.models import channel
from stagecast.db import Database, Kind
from stagecast.db.schema import Record, utcnow
from stagecast.db.upsert import insert_or_ignore
from stagecast.errors import Conflict, NotFound, Unprocessable
from stagecast.live.hooks import EndedSession
from stagecast.webhooks.models import WEBHOOK_EVENTS, webhook, webhook_delivery

SIGNATURE_HEADER = "Stagecast-Signature"
EVENT_HEADER = "Stagecast-Event"
DELIVERY_HEADER = "Stagecast-Delivery"
SIGNATURE_TOLERANCE = 300  # seconds
MAX_PER_CHANNEL = 10
MAX_URL = 2048


# -- signatures ------------------------------------------------------------------------------


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """Return the ``Stagecast-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: float = SIGNATURE_TOLERANCE,
) -> bool:
    """Tell whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


# -- validation ------------------------------------------------------------------------------


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: site-local translators
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 one stands for (mapped, compatible, NAT64, 6to4)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(address: str) -> bool:
    """Tell whether ``address`` (an IP literal) is a public unicast address.

    An IPv6 address that carries an IPv4 one (``::ffff:a.b.c.d``, ``::a.b.c.d``, NAT64
    ``64:ff9b::/96``, 6to4 ``2002::/16``) is judged by that IPv4 address as well; local-use
    NAT64 (``64:ff9b:1::/48``) is never public. Raises ValueError for a non-IP string.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


def validate_url(url: str, *, allow_private: bool) -> str:
    """Return ``url`` if it is an http(s) URL with a host and no credentials; else 422.

    Unless ``allow_private``, an IP literal must be public; host names are checked again
    when resolved, before every delivery.
    """
    if len(url) > MAX_URL:
        raise Unprocessable(f"url must be at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Unprocessable("url is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unprocessable("url must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise Unprocessable("url must not carry credentials (sign with the secret instead)")
    if port == 0:
        raise Unprocessable("url has an invalid port")
    if not allow_private:
        try:
            public = is_public_address(parts.hostname)
        except ValueError:
            public = parts.hostname not in ("localhost",) and not parts.hostname.endswith(
                ".localhost"
            )
        if not public:
            raise Unprocessable("url must point to a public address")
    return url


def validate_events(events: Sequence[str]) -> tuple[str, ...]:
    """Return ``events`` deduplicated in canonical order; 422 for an unknown or empty list."""
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown:
        raise Unprocessable(f"unknown events: {', '.join(unknown)}")
    chosen = tuple(e for e in WEBHOOK_EVENTS if e in events)
    if not chosen:
        raise Unprocessable("choose at least one event")
    return chosen


# -- webhooks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    """A channel's webhook (the secret is only shown when it is created)."""

    id: int
    channel_id: int
    url: str
    events: tuple[str, ...]
    enabled: bool
    created_at: datetime
    updated_at: datetime


def _webhook(row: Record) -> Webhook:
    return Webhook(
        row.id,
        row.channel_id,
        row.url,
        tuple(e for e in row.events.split(",") if e),
        row.enabled,
        row.created_at,
        row.updated_at,
    )


async def create_webhook(
    db: Database, channel_id: int, url: str, events: Sequence[str], *, allow_private: bool
) -> tuple[Webhook, str]:
    """Add a webhook to the channel; return it and its signing secret (shown once).

    Raises Unprocessable for a bad URL or events, Conflict past ``MAX_PER_CHANNEL``.
    """
    validate_url(url, allow_private=allow_private)
    chosen = validate_events(events)
    secret = "whsec_" + secrets.token_urlsafe(32)

    async def unit(conn: AsyncConnection) -> Webhook:
        count = (
            await conn.execute(
                select(func.count()).select_from(webhook).where(webhook.c.channel_id == channel_id)
            )
        ).scalar_one()
        if count >= MAX_PER_CHANNEL:
            raise Conflict(f"a channel may have at most {MAX_PER_CHANNEL} webhooks")
        now = utcnow()
        row = (
            await conn.execute(
                insert(webhook)
                .values(
                    channel_id=channel_id,
                    url=url,
                    secret=secret,
                    events=",".join(chosen),
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
                .returning(*webhook.c)
            )
        ).one()
        return _webhook(row)

    return await db.run(unit, kind=Kind.WRITE, name="create_webhook"), secret


async def list_webhooks(db: Database, channel_id: int) -> list[Webhook]:
    """Return the channel's webhooks, oldest first (at most ``MAX_PER_CHANNEL``)."""

    async def unit(conn: AsyncConnection) -> list[Webhook]:
        rows = await conn.execute(
            select(webhook)
            .where(webhook.c.channel_id == channel_id)
            .order_by(webhook.c.id)
            .limit(MAX_PER_CHANNEL)
        )
        return [_webhook(r) for r in rows]

    return await db.run(unit, kind=Kind.READ, name="list_webhooks")


async def get_webhook(db: Database, channel_id: int, webhook_id: int) -> Webhook:
    """Return one of the channel's webhooks. Raises NotFound."""

    async def unit(conn: AsyncConnection) -> Webhook:
        row = (
            await conn.execute(
                select(webhook).where(
                    webhook.c.id == webhook_id, webhook.c.channel_id == channel_id
                )
            )
        ).one_or_none()
        if row is None:
            raise NotFound("webhook not found")
        return _webhook(row)

    return await db.run(unit, kind=Kind.READ, name="get_webhook")


async def update_webhook(
    db: Database,
    channel_id: int,
    webhook_id: int,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
    allow_private: bool,
) -> Webhook:
    """Change a webhook's URL, events or enabled flag. Raises NotFound, Unprocessable."""
    values: dict[str, Any] = {}
    if url is not None:
        values["url"] = validate_url(url, allow_private=allow_private)
    if events is not None:
        values["events"] = ",".join(validate_events(events))
    if enabled is not None:
        values["enabled"] = enabled

    async def unit(conn: AsyncConnection) -> Webhook:
        row = (
            await conn.execute(
                update(webhook)
                .where(webhook.c.id == webhook_id, webhook.c.channel_id == channel_id)
                .values(updated_at=utcnow(), **values)
                .returning(*webhook.c)
            )
        ).one_or_none()
        if row is None:
            raise NotFound("webhook not found")
        return _webhook(row)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="update_webhook")


async def delete_webhook(db: Database, channel_id: int, webhook_id: int) -> None:
    """Remove a webhook and its delivery log. Raises NotFound."""

    async def unit(conn: AsyncConnection) -> int:
        result = await conn.execute(
            delete(webhook).where(webhook.c.id == webhook_id, webhook.c.channel_id == channel_id)
        )
        return int(result.rowcount)

    if await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="delete_webhook") == 0:
        raise NotFound("webhook not found")


async def channels_with(db: Database, event: str, *, limit: int = 10_000) -> set[int]:
    """Return the channels with an enabled webhook subscribed to ``event`` (at most ``limit``)."""

    async def unit(conn: AsyncConnection) -> set[int]:
        rows = await conn.execute(
            select(webhook.c.channel_id, webhook.c.events)
            .where(webhook.c.enabled.is_(True))
            .limit(limit * MAX_PER_CHANNEL)
        )
        return {int(r.channel_id) for r in rows if event in r.events.split(",")}

    return await db.run(unit, kind=Kind.READ, name="webhook_channels")


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Something webhooks are told about, once per ``key``."""

    name: str  # one of WEBHOOK_EVENTS
    key: str  # unique per occurrence, e.g. "stream.ended:42"
    channel_id: int
    data: dict[str, Any]


async def enqueue_in(conn: AsyncConnection, event: Event) -> int:
    """Create the deliveries of ``event`` in the caller's transaction; return how many are new."""
    rows = (
        await conn.execute(
            select(webhook.c.id, webhook.c.events, channel.c.slug)
            .join(channel, channel.c.id == webhook.c.channel_id)
            .where(webhook.c.channel_id == event.channel_id, webhook.c.enabled.is_(True))
        )
    ).all()
    targets = [r for r in rows if event.name in r.events.split(",")]
    if not targets:
        return 0
    now = utcnow()
    payload = json.dumps(
        {
            "event": event.name,
            "created_at": now.isoformat(),
            "channel": {"id": event.channel_id, "slug": targets[0].slug},
            "data": event.data,
        },
        separators=(",", ":"),
    )
    values = [
        {
            "webhook_id": r.id,
            "event": event.name,
            "event_key": event.key[:128],
            "payload": payload,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for r in targets
    ]
    once = insert_or_ignore(
        conn, webhook_delivery, values, on="uq_webhook_delivery_webhook_id_event_key"
    )
    result = await conn.execute(once)
    return max(int(result.rowcount), 0)


async def enqueue(db: Database, event: Event) -> int:
    """Create the deliveries of ``event`` in their own transaction (safe to repeat)."""

    async def unit(conn: AsyncConnection) -> int:
        return await enqueue_in(conn, event)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="enqueue_webhooks")


def stream_ended(ended: EndedSession) -> Event:
    """Return the ``stream.ended`` event of a session that just ended."""
    return Event(
        "stream.ended",
        f"stream.ended:{ended.session_id}",
        ended.channel_id,
        {
            "session_id": ended.session_id,
            "title": ended.title,
            "started_at": ended.started_at.isoformat() if ended.started_at else None,
            "ended_at": ended.ended_at.isoformat(),
            "reason": ended.reason,
        },
    )


async def on_session_ended(conn: AsyncConnection, ended: EndedSession) -> None:
    """``SessionHooks.on_ended`` hook: queue ``stream.ended`` with the end (same transaction)."""
    await enqueue_in(conn, stream_ended(ended))
