"""VOD use cases: who may list what, edits, soft deletes, lookups and access for playback.

Authorization goes through ``channels.policy``: the studio side needs ``MANAGE`` (owners and
admins; everyone else gets 404), playback needs ``VIEW`` on the VOD's effective visibility
(its own, or its channel's when it inherits). The pages themselves are ``vod.library``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth.models import account
from stagecast.auth.service import USERNAME_RE, Account
from stagecast.channels.policy import Access, Action, allowed, require
from stagecast.channels.service import SLUG_RE, access_to, managed_channel
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.errors import Forbidden, NotFound, Unprocessable
from stagecast.vod import counters, jobs
from stagecast.vod.library import Filter, Vod, select_vods, vod_of
from stagecast.vod.models import STATUSES, VISIBILITIES, vod, vod_job

MAX_SEARCH = 100


@dataclass(frozen=True)
class LibraryRequest:
    """What a studio caller asked to list (before authorization)."""

    owner: str | None = None  # a username: admins only, unless it is the caller
    channel: str | None = None  # a slug the caller manages
    status: str | None = None
    search: str | None = None
    everything: bool = False  # admins: every owner's VODs


def _validate(want: LibraryRequest) -> str | None:
    if want.status is not None and want.status not in STATUSES:
        raise Unprocessable(f"status must be one of {', '.join(STATUSES)}")
    # Names that cannot exist are answered without a query (PostgreSQL refuses NUL in text).
    if want.channel is not None and not SLUG_RE.fullmatch(want.channel):
        raise NotFound("channel not found")
    if want.owner is not None and not USERNAME_RE.fullmatch(want.owner):
        raise NotFound(f"no user {want.owner!r}")
    search = want.search.strip() if want.search else None
    if search and (len(search) > MAX_SEARCH or "\x00" in search):
        raise Unprocessable(f"search must be at most {MAX_SEARCH} characters, without NUL")
    return search or None


async def studio_filter(db: Database, viewer: Account, want: LibraryRequest) -> Filter | None:
    """Return the filter ``viewer`` may list for ``want``; None if it can match nothing.

    Everyone sees the VODs of the channels they own; admins may name another owner or any
    channel, and see every VOD only when they ask for ``everything``. Raises Forbidden when a
    non-admin asks for someone else's VODs, NotFound for an unknown owner or a channel the
    caller does not manage, Unprocessable for a bad status or search.
    """
    search = _validate(want)
    others = want.everything or (want.owner is not None and want.owner != viewer.username)
    if others and not viewer.is_admin:
        raise Forbidden("only admins may list other owners' VODs")
    owner_id: int | None = None if want.everything else viewer.id
    if want.owner is not None:
        owner_id = await _account_id(db, want.owner)
    if want.channel is None:
        return Filter(owner_id=owner_id, status=want.status, search=search)
    found = await managed_channel(db, viewer, want.channel)
    if want.owner is not None and found.owner_id != owner_id:
        return None
    # The channel implies its owner: filter by channel alone, on the channel's index.
    return Filter(channel_id=found.id, status=want.status, search=search)


async def _account_id(db: Database, username: str) -> int:
    async def unit(conn: AsyncConnection) -> int | None:
        found = await conn.execute(select(account.c.id).where(account.c.username == username))
        return found.scalar_one_or_none()

    found = await db.run(unit, kind=Kind.READ, name="vod_owner")
    if found is None:
        raise NotFound(f"no user {username!r}")
    return int(found)


async def _found(conn: AsyncConnection, vod_id: int, *, lock: bool = False) -> Vod | None:
    query = select_vods().where(vod.c.id == vod_id, vod.c.deleted_at.is_(None))
    if lock:
        query = query.with_for_update(of=vod)
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else vod_of(row)


async def _load(conn: AsyncConnection, vod_id: int, *, lock: bool = False) -> Vod:
    found = await _found(conn, vod_id, lock=lock)
    if found is None:
        raise NotFound("vod not found")
    return found


def _require_manage(found: Vod, viewer: Account) -> None:
    require(found.access(viewer), Action.MANAGE, what="vod")


async def playable(db: Database, vod_id: int) -> Vod:
    """Return the VOD ``vod_id`` with no access check. Raises NotFound (also once deleted)."""

    async def unit(conn: AsyncConnection) -> Vod:
        return await _load(conn, vod_id)

    return await db.run(unit, kind=Kind.READ, name="vod_get")


async def find(db: Database, vod_id: int) -> Vod | None:
    """Return the VOD ``vod_id`` with no access check, or None if there is none (or deleted)."""

    async def unit(conn: AsyncConnection) -> Vod | None:
        return await _found(conn, vod_id)

    return await db.run(unit, kind=Kind.READ, name="vod_find")


async def get_vod(db: Database, viewer: Account, vod_id: int) -> Vod:
    """Return a VOD the viewer manages (owner or admin). Raises NotFound otherwise."""
    found = await playable(db, vod_id)
    _require_manage(found, viewer)
    return found


def _validate_fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - {"title", "description", "visibility"}
    if unknown:
        raise Unprocessable(f"unknown fields: {', '.join(sorted(unknown))}")
    if "title" in fields:
        fields = {**fields, "title": str(fields["title"]).strip()}
        if not 1 <= len(fields["title"]) <= 140:
            raise Unprocessable("title must be 1-140 characters")
    if "description" in fields and len(fields["description"]) > 2000:
        raise Unprocessable("description must be at most 2000 characters")
    if any("\x00" in str(fields.get(name, "")) for name in ("title", "description")):
        raise Unprocessable("title and description cannot contain NUL characters")
    if "visibility" in fields and fields["visibility"] not in VISIBILITIES:
        raise Unprocessable(f"visibility must be one of {', '.join(VISIBILITIES)}")
    return fields


async def update_vod(db: Database, viewer: Account, vod_id: int, fields: dict[str, Any]) -> Vod:
    """Change a VOD's title, description or visibility. Raises NotFound for non-owners."""
    fields = _validate_fields(fields)

    async def unit(conn: AsyncConnection) -> Vod:
        _require_manage(await _load(conn, vod_id, lock=True), viewer)
        if fields:
            await conn.execute(
                update(vod).where(vod.c.id == vod_id).values(updated_at=utcnow(), **fields)
            )
        return await _load(conn, vod_id)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="vod_update")


async def delete_vod(db: Database, viewer: Account, vod_id: int, *, purge_after: float) -> None:
    """Soft-delete a VOD: hidden at once, counted out, its files purged ``purge_after`` s later.

    The counters, the cancelled build and the purge job commit with the delete or not at all.
    Raises NotFound for non-owners and for a VOD that is already deleted.
    """

    async def unit(conn: AsyncConnection) -> None:
        # Jobs before the VOD, the order the worker locks them in: no deadlock between them.
        await conn.execute(select(vod_job.c.id).where(vod_job.c.vod_id == vod_id).with_for_update())
        found = await _load(conn, vod_id, lock=True)
        _require_manage(found, viewer)
        now = utcnow()
        await conn.execute(
            update(vod).where(vod.c.id == vod_id).values(deleted_at=now, updated_at=now)
        )
        await counters.move(
            conn, owner_id=found.owner_id, channel_id=found.channel_id, old=found.status, new=None
        )
        await conn.execute(
            update(vod_job)
            .where(
                vod_job.c.vod_id == vod_id,
                vod_job.c.kind == "build",
                vod_job.c.state == "pending",
            )
            .values(state="cancelled", updated_at=now, finished_at=now)
        )
        await jobs.enqueue(conn, vod_id, "purge", due_at=now + timedelta(seconds=purge_after))

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="vod_delete")


async def viewer_access(
    db: Database, found: Vod, viewer: Account | None, *, playback_token_ok: bool, link_ok: bool
) -> Access:
    """Return ``viewer``'s standing on ``found``, with their moderator grant when they need it.

    The grant is only looked up when the VOD is not open to everyone anyway.
    """
    base = found.access(viewer, playback_token_ok=playback_token_ok, link_ok=link_ok)
    if viewer is None or allowed(base, Action.VIEW):
        return base
    _, access = await access_to(db, found.channel_slug, viewer)
    return replace(access, visibility=base.visibility, playback_token_ok=playback_token_ok)
