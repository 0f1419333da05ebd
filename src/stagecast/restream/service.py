"""A channel's restream destinations: where its live stream is also pushed, and their checks.

A destination is a name, an ``rtmp://`` or ``rtmps://`` server URL (the platform's ingest, as
YouTube and Twitch print it) and a stream key, enabled or not. The key is stored (every push
sends it) and never shown back in full: ``masked`` keeps its last four characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db import Database, Kind
from stagecast.db.schema import Record, utcnow
from stagecast.errors import Conflict, NotFound, Unprocessable
from stagecast.restream.models import restream_destination

MAX_PER_CHANNEL = 10
_KEY = re.compile(r"^[\x21-\x7e]{1,512}$")  # printable ASCII, no spaces
_NAME_MAX = 64
_URL_MAX = 512


@dataclass(frozen=True)
class Destination:
    """One restream destination of a channel."""

    id: int
    channel_id: int
    name: str
    url: str
    stream_key: str
    enabled: bool
    created_at: datetime

    @property
    def target(self) -> str:
        """Return where ffmpeg pushes: the server URL and the stream key as its last part."""
        return f"{self.url.rstrip('/')}/{self.stream_key}"


def masked(key: str) -> str:
    """Return the stream key as shown back: its last four characters only."""
    return "…" + key[-4:] if len(key) > 4 else "…"


def validate_url(url: str) -> str:
    """Return the server URL if it is one ffmpeg can push to. Raises Unprocessable."""
    url = url.strip()
    if len(url) > _URL_MAX:
        raise Unprocessable(f"url is longer than {_URL_MAX} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("rtmp", "rtmps"):
        raise Unprocessable("url must start with rtmp:// or rtmps://")
    if not parts.hostname:
        raise Unprocessable("url has no host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise Unprocessable("url must not carry credentials, a query or a fragment")
    if any(c.isspace() for c in url):
        raise Unprocessable("url must not contain spaces")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise Unprocessable("url has an invalid port") from exc
    return url


def validate_name(name: str) -> str:
    """Return the trimmed name (1 to 64 characters). Raises Unprocessable."""
    name = name.strip()
    if not name or len(name) > _NAME_MAX:
        raise Unprocessable(f"name must be 1 to {_NAME_MAX} characters")
    return name


def validate_key(key: str) -> str:
    """Return the stream key (printable ASCII without spaces, at most 512). Raises Unprocessable."""
    if not _KEY.fullmatch(key):
        raise Unprocessable("stream_key must be 1 to 512 printable characters without spaces")
    return key


def _destination(row: Record) -> Destination:
    return Destination(
        int(row.id),
        int(row.channel_id),
        row.name,
        row.url,
        row.stream_key,
        bool(row.enabled),
        row.created_at,
    )


async def create_destination(
    db: Database, channel_id: int, *, name: str, url: str, stream_key: str, enabled: bool
) -> Destination:
    """Add a destination. Raises Unprocessable, and Conflict past ``MAX_PER_CHANNEL``."""
    values = {
        "channel_id": channel_id,
        "name": validate_name(name),
        "url": validate_url(url),
        "stream_key": validate_key(stream_key),
        "enabled": enabled,
    }

    async def unit(conn: AsyncConnection) -> Destination:
        count = (
            await conn.execute(
                select(func.count())
                .select_from(restream_destination)
                .where(restream_destination.c.channel_id == channel_id)
            )
        ).scalar_one()
        if count >= MAX_PER_CHANNEL:
            raise Conflict(f"a channel has at most {MAX_PER_CHANNEL} restream destinations")
        now = utcnow()
        row = (
            await conn.execute(
                insert(restream_destination)
                .values(**values, created_at=now, updated_at=now)
                .returning(*restream_destination.c)
            )
        ).one()
        return _destination(row)

    return await db.run(unit, kind=Kind.WRITE, name="restream_create")


async def list_destinations(db: Database, channel_id: int) -> list[Destination]:
    """Return the channel's destinations, oldest first."""

    async def unit(conn: AsyncConnection) -> list[Destination]:
        rows = await conn.execute(
            select(restream_destination)
            .where(restream_destination.c.channel_id == channel_id)
            .order_by(restream_destination.c.id)
        )
        return [_destination(r) for r in rows]

    return await db.run(unit, kind=Kind.READ, name="restream_list")


async def update_destination(
    db: Database,
    channel_id: int,
    destination_id: int,
    *,
    name: str | None = None,
    url: str | None = None,
    stream_key: str | None = None,
    enabled: bool | None = None,
) -> Destination:
    """Change a destination's fields (None: unchanged). Raises NotFound and BadRequest."""
    values: dict[str, object] = {}
    if name is not None:
        values["name"] = validate_name(name)
    if url is not None:
        values["url"] = validate_url(url)
    if stream_key is not None:
        values["stream_key"] = validate_key(stream_key)
    if enabled is not None:
        values["enabled"] = enabled

    async def unit(conn: AsyncConnection) -> Destination:
        row = (
            await conn.execute(
                update(restream_destination)
                .where(
                    restream_destination.c.id == destination_id,
                    restream_destination.c.channel_id == channel_id,
                )
                .values(**values, updated_at=utcnow())
                .returning(*restream_destination.c)
            )
        ).one_or_none()
        if row is None:
            raise NotFound("no such restream destination")
        return _destination(row)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="restream_update")


async def delete_destination(db: Database, channel_id: int, destination_id: int) -> None:
    """Remove a destination. Raises NotFound."""

    async def unit(conn: AsyncConnection) -> None:
        result = await conn.execute(
            delete(restream_destination).where(
                restream_destination.c.id == destination_id,
                restream_destination.c.channel_id == channel_id,
            )
        )
        if result.rowcount != 1:
            raise NotFound("no such restream destination")

    await db.run(unit, kind=Kind.WRITE, name="restream_delete")
