"""Reversible moderation over REST and the socket: a ban that removes the user's recent
messages, the list of bans and timeouts, lifting them, and what a timed-out viewer is told."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from stagecast.auth.service import get_account
from stagecast.channels import service as channels
from stagecast.chat import messages
from stagecast.chat.messages import Draft
from stagecast.db.schema import utcnow
from tests.chat.conftest import (
    Live,
    Room,
    frame_where,
    hello,
    make_room,
    of_type,
    open_socket,
    quick_user,
)

BASE = "/api/v1/channels/{slug}/chat"


@pytest.fixture
async def rest_room(app: FastAPI) -> Room:
    """A public channel with an owner, a moderator and two viewers (in-process client)."""
    return await make_room(app.state.runtime.core)


def url(room: Room, path: str = "") -> str:
    """Return the chat URL of ``room`` plus ``path``."""
    return BASE.format(slug=room.slug) + path


async def post(client: httpx.AsyncClient, room: Room, who: str, body: str) -> int:
    """Post ``body`` as ``who``; return the message id."""
    response = await client.post(
        url(room, "/messages"), json={"body": body}, headers=room.auth(who)
    )
    assert response.status_code == 201, response.text
    return int(response.json()["message"]["id"])


async def bodies(client: httpx.AsyncClient, room: Room) -> list[str]:
    """Return the visible history, oldest first."""
    page = (await client.get(url(room, "/messages"))).json()
    return [m["body"] for m in reversed(page["items"])]


async def test_a_ban_can_remove_the_users_recent_messages_and_only_those(
    client: httpx.AsyncClient, rest_room: Room, app: FastAPI
) -> None:
    """remove_messages deletes the banned user's messages of the last 24 h, not others' nor
    older ones, reports their ids and logs the removal."""
    room, core = rest_room, app.state.runtime.core
    ann = await get_account(core.db, "ann")
    old = Draft(ann.id, "ann", "from two days ago", sent_at=utcnow() - timedelta(days=2))
    await messages.store(core.db, room.channel_id, old)
    spam = [await post(client, room, "ann", f"spam {i}") for i in range(3)]
    await post(client, room, "bob", "bob stays")
    banned = await client.put(
        url(room, "/bans/ann"),
        json={"reason": "spam", "remove_messages": True},
        headers=room.auth("mod"),
    )
    assert banned.status_code == 200, banned.text
    assert banned.json()["removed_messages"] == spam
    assert await bodies(client, room) == ["from two days ago", "bob stays"]
    log = (await client.get(url(room, "/log"), headers=room.auth("owner"))).json()["items"]
    assert [(e["action"], e["target"], e["detail"]) for e in log[:2]] == [
        ("purge", "ann", "3 recent messages"),
        ("ban", "ann", "spam"),
    ]


async def test_a_plain_ban_leaves_the_messages_up(
    client: httpx.AsyncClient, rest_room: Room
) -> None:
    """Without remove_messages (the default) a ban removes nothing."""
    await post(client, rest_room, "ann", "still here")
    banned = await client.put(url(rest_room, "/bans/ann"), json={}, headers=rest_room.auth("mod"))
    assert banned.json()["removed_messages"] == []
    assert await bodies(client, rest_room) == ["still here"]


async def test_removing_messages_needs_the_delete_permission(
    client: httpx.AsyncClient, rest_room: Room, app: FastAPI
) -> None:
    """A moderator who may ban but not delete gets 403 for a ban with removal, and nothing
    happens; a plain ban is still theirs to make."""
    db = app.state.runtime.core.db
    owner = await get_account(db, "owner")
    grant = channels.Grant(can_delete=False)
    await channels.set_moderator(db, rest_room.channel_id, "mod", grant, granted_by=owner.id)
    await post(client, rest_room, "ann", "kept")
    refused = await client.put(
        url(rest_room, "/bans/ann"), json={"remove_messages": True}, headers=rest_room.auth("mod")
    )
    assert refused.status_code == 403
    assert "delete permission" in refused.json()["error"]["message"]
    listed = await client.get(url(rest_room, "/restrictions"), headers=rest_room.auth("mod"))
    assert listed.json()["items"] == []
    plain = await client.put(url(rest_room, "/bans/ann"), json={}, headers=rest_room.auth("mod"))
    assert plain.status_code == 200
    assert await bodies(client, rest_room) == ["kept"]


@pytest.mark.parametrize(
    "body",
    [
        {"remove_messages": "yes please"},
        {"remove_messages": None},
        {"reason": "x" * 201},
        {"reason": 5},
        {"purge": True},
        [],
        "ban",
    ],
)
async def test_bad_ban_bodies_are_422(
    client: httpx.AsyncClient, rest_room: Room, body: object
) -> None:
    """A ban body with a wrong type, an overlong reason or an unknown field is a 422."""
    await post(client, rest_room, "ann", "kept")
    response = await client.put(
        url(rest_room, "/bans/ann"), json=body, headers=rest_room.auth("owner")
    )
    assert response.status_code == 422, response.text
    assert await bodies(client, rest_room) == ["kept"]


async def test_the_list_shows_each_restriction_until_it_is_lifted(
    client: httpx.AsyncClient, rest_room: Room
) -> None:
    """Bans and timeouts are listed with kind, reason and who made them; lifting one takes
    it off the list and lets the user post again."""
    room = rest_room
    await client.put(url(room, "/bans/ann"), json={"reason": "spam"}, headers=room.auth("mod"))
    await client.put(
        url(room, "/timeouts/bob"),
        json={"seconds": 300, "reason": "calm"},
        headers=room.auth("owner"),
    )
    items = (await client.get(url(room, "/restrictions"), headers=room.auth("mod"))).json()["items"]
    shown = {(r["username"], r["kind"], r["reason"], r["created_by"]) for r in items}
    assert shown == {("ann", "ban", "spam", "mod"), ("bob", "timeout", "calm", "owner")}
    timeout = next(r for r in items if r["kind"] == "timeout")
    assert timeout["expires_at"] is not None

    assert (
        await client.delete(url(room, "/bans/ann"), headers=room.auth("mod"))
    ).status_code == 204
    assert (
        await client.delete(url(room, "/timeouts/bob"), headers=room.auth("mod"))
    ).status_code == 204
    after = (await client.get(url(room, "/restrictions"), headers=room.auth("mod"))).json()
    assert after == {"items": [], "next_before": None}
    await post(client, room, "ann", "back")
    await post(client, room, "bob", "me too")


async def test_lifting_the_wrong_kind_or_nothing_is_404(
    client: httpx.AsyncClient, rest_room: Room
) -> None:
    """A ban is not lifted as a timeout nor a timeout as a ban; lifting twice, lifting an
    unknown user or nobody's restriction is a 404 that changes nothing."""
    room, mod = rest_room, rest_room.auth("mod")
    await client.put(url(room, "/bans/ann"), json={}, headers=mod)
    await client.put(url(room, "/timeouts/bob"), json={"seconds": 60}, headers=mod)
    for path in (
        "/timeouts/ann",
        "/bans/bob",
        "/bans/nobody",
        "/timeouts/owner",
        "/bans/" + "x" * 300,
    ):
        response = await client.delete(url(room, path), headers=mod)
        assert response.status_code == 404, path
        assert response.json()["error"]["message"]
    items = (await client.get(url(room, "/restrictions"), headers=mod)).json()["items"]
    assert {r["username"] for r in items} == {"ann", "bob"}
    assert (await client.delete(url(room, "/bans/ann"), headers=mod)).status_code == 204
    assert (await client.delete(url(room, "/bans/ann"), headers=mod)).status_code == 404


async def test_lifting_is_404_to_viewers_and_needs_the_matching_permission(
    client: httpx.AsyncClient, rest_room: Room, app: FastAPI
) -> None:
    """A viewer cannot lift anything (404); a moderator without the ban permission cannot lift
    a ban but may end a timeout."""
    room, db = rest_room, app.state.runtime.core.db
    await client.put(url(room, "/bans/ann"), json={}, headers=room.auth("owner"))
    await client.put(url(room, "/timeouts/bob"), json={"seconds": 60}, headers=room.auth("owner"))
    assert (
        await client.delete(url(room, "/bans/ann"), headers=room.auth("bob"))
    ).status_code == 404
    owner = await get_account(db, "owner")
    await channels.set_moderator(
        db, room.channel_id, "mod", channels.Grant(can_ban=False), granted_by=owner.id
    )
    assert (
        await client.delete(url(room, "/bans/ann"), headers=room.auth("mod"))
    ).status_code == 404
    assert (
        await client.delete(url(room, "/timeouts/bob"), headers=room.auth("mod"))
    ).status_code == 204


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "before=" + "y" * 1025])
async def test_bad_list_queries_are_422(
    client: httpx.AsyncClient, rest_room: Room, query: str
) -> None:
    """The page size is 1-100 and a cursor at most 1024 characters."""
    response = await client.get(
        url(rest_room, f"/restrictions?{query}"), headers=rest_room.auth("mod")
    )
    assert response.status_code == 422


async def test_forged_or_foreign_list_cursors_are_400(
    client: httpx.AsyncClient, rest_room: Room, app: FastAPI
) -> None:
    """A cursor that is not one of ours, or is another channel's, is a 400."""
    other = await make_room(app.state.runtime.core, prefix="z")
    for name in ("cee1", "cee2"):
        await quick_user(app.state.runtime.core.db, name)
        await client.put(url(other, f"/bans/{name}"), json={}, headers=other.auth("owner"))
    page = (
        await client.get(url(other, "/restrictions?limit=1"), headers=other.auth("owner"))
    ).json()
    assert page["next_before"]
    for cursor in (page["next_before"], "not-a-cursor", "é"):
        response = await client.get(
            url(rest_room, "/restrictions"),
            params={"before": cursor},
            headers=rest_room.auth("mod"),
        )
        assert response.status_code == 400, cursor


async def test_other_viewers_sockets_drop_the_removed_messages(
    live: Live, http: httpx.AsyncClient, room: Room
) -> None:
    """A ban with removal reaches every socket as one ``purged`` frame naming the ids, and a
    moderator's socket is told the list of bans and timeouts changed."""
    ids = [await post(http, room, "ann", f"spam {i}") for i in range(2)]
    viewer = await open_socket(live.socket_url(room.slug), room.auth("bob"))
    moderator = await open_socket(live.socket_url(room.slug), room.auth("mod"))
    try:
        await hello(viewer)
        await hello(moderator)
        response = await http.put(
            url(room, "/bans/ann"), json={"remove_messages": True}, headers=room.auth("owner")
        )
        assert response.status_code == 200
        assert (await frame_where(viewer, of_type("purged")))["ids"] == ids
        assert (await frame_where(moderator, of_type("restrictions"))) == {"type": "restrictions"}
        assert (await frame_where(moderator, of_type("purged")))["ids"] == ids
    finally:
        await viewer.close()
        await moderator.close()


async def test_a_timed_out_viewer_is_told_the_seconds_left_and_when_it_is_lifted(
    live: Live, http: httpx.AsyncClient, room: Room
) -> None:
    """The timeout frame and a later hello carry the seconds left (the page counts down from
    them whatever its clock says); lifting sends ``until: null``."""
    socket = await open_socket(live.socket_url(room.slug), room.auth("ann"))
    try:
        assert (await hello(socket))["timeout_until"] is None
        await http.put(url(room, "/timeouts/ann"), json={"seconds": 120}, headers=room.auth("mod"))
        told = await frame_where(socket, of_type("timeout"))
        assert told["until"] is not None
        assert 110 < told["remaining"] <= 120
        again = await open_socket(live.socket_url(room.slug), room.auth("ann"))
        try:
            greeting = await hello(again)
            assert greeting["timeout_until"] == told["until"]
            assert 110 < greeting["timeout_remaining"] <= 120
        finally:
            await again.close()
        await http.delete(url(room, "/timeouts/ann"), headers=room.auth("mod"))
        # (An announcement may be applied twice by the process that made it: harmless.)
        lifted = await frame_where(socket, lambda f: f["type"] == "timeout" and not f["until"])
        assert lifted == {"type": "timeout", "until": None}
    finally:
        await socket.close()
