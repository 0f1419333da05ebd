"""Pages of the VOD library: keyset pagination over ``(created_at, id)`` with exact totals.

Newest first; each filter is served by the partial index (``deleted_at IS NULL``) whose leading
columns are exactly its equalities, then ``(created_at, id)``, so a page at any depth is one
index range read of ``limit + 1`` rows (the extra row says whether there is more). The exact
total is a lookup of ``vod_counter`` in the same statement (one snapshot), never a count of
rows; a title search has no cheap exact total, so its ``total`` is None.

The statements are built once per filter shape with bound parameters, so a page costs no
query construction and a compiled-cache hit.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth.service import Account
from stagecast.channels.models import channel
from stagecast.channels.policy import Access
from stagecast.db import Database, Kind
from stagecast.db.schema import IdType, Record, UTCDateTime
from stagecast.errors import Unprocessable
from stagecast.vod import counters, cursor
from stagecast.vod.cursor import Position
from stagecast.vod.models import STATUSES, vod

MAX_LIMIT = 100
Params = dict[str, Any]


@dataclass(frozen=True)
class Vod:
    """A VOD with what its channel says about it."""

    id: int
    session_id: int
    channel_id: int
    owner_id: int
    title: str
    description: str
    visibility: str  # the VOD's own setting; "inherit" follows the channel
    status: str
    failure_reason: str | None
    started_at: datetime | None
    ended_at: datetime
    duration: float | None
    byte_size: int | None
    thumbnail_path: str | None
    created_at: datetime
    updated_at: datetime
    channel_slug: str
    channel_visibility: str

    @property
    def effective_visibility(self) -> str:
        """Return who may watch: the VOD's own visibility, or its channel's when inherited."""
        return self.channel_visibility if self.visibility == "inherit" else self.visibility

    def access(
        self, viewer: Account | None, *, playback_token_ok: bool = False, link_ok: bool = False
    ) -> Access:
        """Return ``viewer``'s standing on this VOD (no moderator grant: callers add it).

        An unlisted VOD's link is its id plus its link key (``link_ok``); asked for without
        the key, it is as closed as a private one.
        """
        visibility = self.effective_visibility
        if visibility == "unlisted" and not link_ok:
            visibility = "private"
        return Access(
            channel_id=self.channel_id,
            owner_id=self.owner_id,
            visibility=visibility,
            account=viewer,
            playback_token_ok=playback_token_ok,
        )


def _of_channel(column: Any) -> Any:
    # A correlated lookup per returned row rather than a join: the page query then has one
    # table to plan, and every planner walks the filter's index (no join order to get wrong).
    return select(column).where(channel.c.id == vod.c.channel_id).scalar_subquery()


_COLUMNS = (
    vod.c.id,
    vod.c.session_id,
    vod.c.channel_id,
    vod.c.owner_id,
    vod.c.title,
    vod.c.description,
    vod.c.visibility,
    vod.c.status,
    vod.c.failure_reason,
    vod.c.started_at,
    vod.c.ended_at,
    vod.c.duration,
    vod.c.byte_size,
    vod.c.thumbnail_path,
    vod.c.created_at,
    vod.c.updated_at,
    _of_channel(channel.c.slug).label("channel_slug"),
    _of_channel(channel.c.visibility).label("channel_visibility"),
)


def vod_of(row: Record) -> Vod:
    """Return the ``Vod`` of a row selected by ``select_vods``."""
    return Vod(*(row[i] for i in range(len(_COLUMNS))))


def select_vods() -> Select[Any]:
    """Return a SELECT of every ``Vod`` field, to be filtered."""
    return select(*_COLUMNS)


@dataclass(frozen=True)
class Filter:
    """What a library page shows. ``search`` is a case-insensitive substring of the title."""

    owner_id: int | None = None
    channel_id: int | None = None
    status: str | None = None
    search: str | None = None

    @property
    def scope(self) -> str:
        """Return a short name of these filters, to bind cursors to them."""
        raw = f"{self.owner_id}|{self.channel_id}|{self.status}|{self.search}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def counter(self) -> tuple[str, int] | None:
        """Return the counter row that totals this filter, or None (a search has none)."""
        if self.search:
            return None
        if self.channel_id is not None:
            return ("channel", self.channel_id)
        if self.owner_id is not None:
            return ("owner", self.owner_id)
        return ("all", 0)

    @property
    def statuses(self) -> list[str]:
        """Return the statuses this filter counts."""
        return [self.status] if self.status else list(STATUSES)


@dataclass(frozen=True)
class Page:
    """One page of VODs; ``total`` is exact, or None where no exact count is cheap."""

    items: list[Vod]
    next_cursor: str | None
    has_more: bool
    total: int | None


def _ordered(query: Select[Any], after: bool) -> Select[Any]:
    if after:
        key = tuple_(vod.c.created_at, vod.c.id)
        start = tuple_(
            bindparam("after_at", type_=UTCDateTime()), bindparam("after_id", type_=IdType)
        )
        query = query.where(key < start)
    return query.order_by(vod.c.created_at.desc(), vod.c.id.desc()).limit(bindparam("limit"))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@functools.cache
def _library_statement(
    owner: bool, channel_: bool, status: bool, search: bool, after: bool
) -> Select[Any]:
    query = select_vods().where(vod.c.deleted_at.is_(None))
    if owner:
        query = query.where(vod.c.owner_id == bindparam("owner_id"))
    if channel_:
        query = query.where(vod.c.channel_id == bindparam("channel_id"))
    if status:
        query = query.where(vod.c.status == bindparam("status"))
    if search:
        query = query.where(vod.c.title.ilike(bindparam("pattern"), escape="\\"))
    else:
        total = counters.total_query().scalar_subquery()
        query = query.add_columns(total.label("total"))
    return _ordered(query, after)


def _position(after: Position | None) -> Params:
    return {"after_at": after.created_at, "after_id": after.id} if after else {}


def library_query(filt: Filter, after: Position | None, limit: int) -> tuple[Select[Any], Params]:
    """Return the studio page statement and its parameters (``limit + 1`` rows and the total).

    Each combination of owner / channel / status is served by the partial index whose leading
    columns are exactly those equalities, then ``(created_at, id)``.
    """
    counter = filt.counter()
    statement = _library_statement(
        filt.owner_id is not None,
        filt.channel_id is not None,
        filt.status is not None,
        counter is None,
        after is not None,
    )
    params: Params = {"limit": limit + 1, **_position(after)}
    for name in ("owner_id", "channel_id", "status"):
        if getattr(filt, name) is not None:
            params[name] = getattr(filt, name)
    if counter is None:
        params["pattern"] = f"%{_escape_like(filt.search or '')}%"
    else:
        params.update(scope=counter[0], scope_id=counter[1], statuses=filt.statuses)
    return statement, params


@functools.cache
def _public_statement(channel_public: bool, after: bool) -> Select[Any]:
    # The visibility conditions are literals, exactly as in the partial indexes' predicates,
    # so both SQLite and PostgreSQL match them to their index whatever the parameters.
    visible: ColumnElement[bool]
    if channel_public:
        visible = vod.c.visibility.in_([literal_column("'inherit'"), literal_column("'public'")])
    else:
        visible = vod.c.visibility == literal_column("'public'")
    query = select_vods().where(
        vod.c.channel_id == bindparam("channel_id"),
        vod.c.deleted_at.is_(None),
        vod.c.status == literal_column("'ready'"),
        visible,
    )
    return _ordered(query, after)


def public_query(
    channel_id: int, channel_public: bool, after: Position | None, limit: int
) -> tuple[Select[Any], Params]:
    """Return the public page statement of a channel (ready, effectively public VODs)."""
    params = {"channel_id": channel_id, "limit": limit + 1, **_position(after)}
    return _public_statement(channel_public, after is not None), params


@functools.cache
def _everywhere_statement(after: bool) -> Select[Any]:
    # Served by ``ix_vod_status_created`` (status, created_at, id): newest ready VODs first,
    # each checked against its channel's visibility until the page is full.
    inherited = and_(
        vod.c.visibility == literal_column("'inherit'"),
        _of_channel(channel.c.visibility) == literal_column("'public'"),
    )
    query = select_vods().where(
        vod.c.deleted_at.is_(None),
        vod.c.status == literal_column("'ready'"),
        or_(vod.c.visibility == literal_column("'public'"), inherited),
    )
    return _ordered(query, after)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise Unprocessable(f"limit must be 1-{MAX_LIMIT}")


def _decode(secret: str, token: str | None, scope: str) -> Position | None:
    return cursor.decode(secret, token, scope) if token else None


async def _fetch(db: Database, statement: Select[Any], params: Params) -> list[Record]:
    async def unit(conn: AsyncConnection) -> list[Record]:
        return list((await conn.execute(statement, params)).all())

    return await db.run(unit, kind=Kind.READ, name="vod_page")


def _slice(
    secret: str, rows: list[Record], limit: int, scope: str
) -> tuple[list[Vod], str | None, bool]:
    has_more = len(rows) > limit
    items = [vod_of(r) for r in rows[:limit]]
    next_cursor = None
    if has_more:
        last = items[-1]
        next_cursor = cursor.encode(secret, Position(last.created_at, last.id), scope)
    return items, next_cursor, has_more


async def library_page(
    db: Database, secret: str, filt: Filter, *, limit: int, token: str | None
) -> Page:
    """Return one studio page for ``filt`` (the caller has already authorized it).

    Raises Unprocessable for a bad limit, BadSignature (400) for a bad cursor.
    """
    _check_limit(limit)
    after = _decode(secret, token, filt.scope)
    rows = await _fetch(db, *library_query(filt, after, limit))
    items, next_cursor, has_more = _slice(secret, rows, limit, filt.scope)
    counter = filt.counter()
    total: int | None = None
    if counter is not None:
        total = int(rows[0].total) if rows else await _count(db, *counter, filt.statuses)
    return Page(items, next_cursor, has_more, total)


async def _count(db: Database, scope: str, scope_id: int, statuses: list[str]) -> int:
    async def unit(conn: AsyncConnection) -> int:
        return await counters.total(conn, scope, scope_id, statuses)

    return await db.run(unit, kind=Kind.READ, name="vod_total")


async def channel_page(
    db: Database,
    channel_id: int,
    channel_public: bool,
    secret: str,
    *,
    limit: int,
    token: str | None,
) -> Page:
    """Return one public page of a channel's VODs (ready, effectively public); no total.

    The caller has checked that the viewer may see the channel at all.
    """
    _check_limit(limit)
    scope = f"public:{channel_id}"
    after = _decode(secret, token, scope)
    rows = await _fetch(db, *public_query(channel_id, channel_public, after, limit))
    items, next_cursor, has_more = _slice(secret, rows, limit, scope)
    return Page(items, next_cursor, has_more, None)


async def public_page(db: Database, secret: str, *, limit: int, token: str | None) -> Page:
    """Return one page of every channel's ready, effectively public VODs, newest first.

    For anyone, signed in or not; no total. Raises Unprocessable for a bad limit,
    BadSignature (400) for a bad cursor.
    """
    _check_limit(limit)
    scope = "public:all"
    after = _decode(secret, token, scope)
    params = {"limit": limit + 1, **_position(after)}
    rows = await _fetch(db, _everywhere_statement(after is not None), params)
    items, next_cursor, has_more = _slice(secret, rows, limit, scope)
    return Page(items, next_cursor, has_more, None)
