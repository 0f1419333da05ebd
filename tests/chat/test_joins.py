"""Joining a chat socket without the database: channel facts and standings come from caches
that moderation keeps current, so a crowd reconnecting at once costs a few reads, not one each.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from stagecast.auth.service import get_account
from stagecast.chat.rules import Announcement
from stagecast.config import Settings
from stagecast.db import Kind
from tests.chat.conftest import (
    Frame,
    Live,
    Room,
    close_code,
    hello,
    next_frame,
    open_socket,
    quick_user,
)
from tests.conftest import stalled

CROWD = 200


def reads(live: Live) -> int:
    """Return how many read attempts the server's database layer has made so far."""
    return live.core.db.stats.attempts[Kind.READ]


async def crowd_joins(live: Live, url: str, count: int, headers: list[dict[str, str]]) -> None:
    """Open ``count`` sockets at once (cycling through ``headers``), wait for every hello,
    then close them."""
    sockets: list[ClientConnection] = []

    async def one(i: int) -> None:
        ws = await open_socket(url, headers[i % len(headers)] if headers else None)
        sockets.append(ws)
        await hello(ws)

    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_a_crowd_of_anonymous_joins_reads_the_database_a_few_times(
    live: Live, room: Room
) -> None:
    """200 anonymous sockets joining a cold process at once cost a handful of reads in all."""
    before = reads(live)
    await crowd_joins(live, live.socket_url(room.slug), CROWD, [])
    assert reads(live) - before <= 10  # channel, rules, the room's newest id; not one per join


async def test_signed_in_joins_read_only_their_credentials(live: Live, room: Room) -> None:
    """Signed-in joiners of a cold channel add no per-join read beyond their API token."""
    viewers = [await quick_user(live.core.db, f"crowd{i}") for i in range(20)]
    headers = [{"Authorization": f"Bearer {token}"} for token in viewers]
    before = reads(live)
    await crowd_joins(live, live.socket_url(room.slug), len(headers), headers)
    # One token read each, then channel, rules, roster and room once (was 3 reads a join).
    assert reads(live) - before <= len(headers) + 10


async def test_an_unknown_slug_is_looked_up_once(live: Live) -> None:
    """Sockets for a channel that does not exist are refused with 4404 from the cache."""
    url = live.socket_url("no-such-channel")
    first = await open_socket(url)
    assert await close_code(first) == 4404
    before = reads(live)
    for _ in range(20):
        ws = await open_socket(url)
        assert (await next_frame(ws))["code"] == "not_found"
        assert await close_code(ws) == 4404
    assert reads(live) - before <= 2  # the one-second lookup cache may expire once


async def test_a_ban_and_a_timeout_apply_at_once_to_a_cached_standing(
    live: Live, room: Room, http: httpx.AsyncClient
) -> None:
    """With the channel's roster cached, the join right after a ban is refused; after the
    unban it is let in; a timeout shows in the next hello."""
    ann, base = room.auth("ann"), f"/api/v1/channels/{room.slug}/chat"
    first = await open_socket(live.socket_url(room.slug), ann)
    assert (await hello(first))["timeout_until"] is None
    await first.close()
    assert (await http.put(f"{base}/bans/ann", json={}, headers=room.auth("mod"))).is_success
    refused = await open_socket(live.socket_url(room.slug), ann)
    assert (await next_frame(refused))["code"] == "banned"
    assert await close_code(refused) == 4403
    assert (await http.delete(f"{base}/bans/ann", headers=room.auth("mod"))).status_code == 204
    back = await open_socket(live.socket_url(room.slug), ann)
    await hello(back)
    put = await http.put(f"{base}/timeouts/ann", json={"seconds": 60}, headers=room.auth("mod"))
    assert put.is_success
    await back.close()
    again = await open_socket(live.socket_url(room.slug), ann)
    assert (await hello(again))["timeout_until"] is not None


async def test_an_announcement_the_database_contradicts_is_undone_by_the_reread(
    live: Live, room: Room
) -> None:
    """A ban announced out of order (the database has the user free) stops applying within
    moments, once the roster read behind the patch lands, not when the roster expires."""
    ann = room.auth("ann")
    first = await open_socket(live.socket_url(room.slug), ann)
    await hello(first)  # the roster is cached
    await first.close()
    ann_id = (await get_account(live.core.db, "ann")).id
    live.chat.apply(Announcement(room.channel_id, ann_id, banned=True))
    async with asyncio.timeout(3):
        while True:
            ws = await open_socket(live.socket_url(room.slug), ann)
            if (await next_frame(ws))["type"] == "hello":
                break
            assert await close_code(ws) == 4403


async def powers_on_join(live: Live, room: Room, who: str) -> Frame | None:
    """Join as ``who`` and return the moderator powers the hello grants."""
    ws = await open_socket(live.socket_url(room.slug), room.auth(who))
    try:
        frame = await hello(ws)
    finally:
        await ws.close()
    powers: Frame | None = frame["moderator"]
    return powers


async def test_moderator_changes_reach_a_cached_standing(
    live: Live, room: Room, http: httpx.AsyncClient
) -> None:
    """Taking moderation away (or granting it) shows in the next join, not after the cache ages."""
    assert await powers_on_join(live, room, "mod") is not None
    path = f"/api/v1/channels/{room.slug}/moderators"
    removed = await http.delete(f"{path}/mod", headers=room.auth("owner"))
    assert removed.status_code == 204
    async with asyncio.timeout(3):  # the announcement crosses the bus; the cache lives 30 s
        while await powers_on_join(live, room, "mod") is not None:
            pass
    granted = await http.put(f"{path}/bob", json={}, headers=room.auth("owner"))
    assert granted.is_success
    async with asyncio.timeout(3):
        while await powers_on_join(live, room, "bob") is None:
            pass


async def test_joins_succeed_while_the_channel_tables_are_locked(
    live: Live, room: Room, backend: str, settings: Settings
) -> None:
    """With the channel known, sockets join while its tables are locked on PostgreSQL."""
    if backend != "postgres":
        pytest.skip("table locks are PostgreSQL's")
    keeper = await open_socket(live.socket_url(room.slug), room.auth("ann"))  # the room stays
    await hello(keeper)
    tables = ("channel", "channel_moderator", "chat_channel", "chat_filter", "chat_restriction")
    async with stalled(settings, *tables):
        async with asyncio.timeout(10):
            for who in ("ann", "bob", "mod"):
                ws = await open_socket(live.socket_url(room.slug), room.auth(who))
                assert (await hello(ws))["user"] == who
                await ws.close()
            await crowd_joins(live, live.socket_url(room.slug), 50, [])
    await keeper.close()
