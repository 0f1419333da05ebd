"""Chat over REST: history, posting, moderation, and who may do what."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from stagecast.channels import tokens
from stagecast.chat.runtime import Chat
from tests.chat.conftest import Room, make_room, quick_user

BASE = "/api/v1/channels/{slug}/chat"


@pytest.fixture
async def room(app: FastAPI) -> Room:
    """A public channel with an owner, a moderator and two viewers."""
    return await make_room(app.state.runtime.core)


def url(room: Room, path: str = "") -> str:
    """Return the chat URL of ``room`` plus ``path``."""
    return BASE.format(slug=room.slug) + path


async def post(
    client: httpx.AsyncClient, room: Room, who: str, body: str, **extra: object
) -> httpx.Response:
    """Post ``body`` as ``who``."""
    return await client.post(
        url(room, "/messages"), json={"body": body, **extra}, headers=room.auth(who)
    )


async def test_history_is_newest_first_with_authors_and_a_null_total(
    client: httpx.AsyncClient, room: Room
) -> None:
    """Anyone may read a public channel's history; no total is computed."""
    for i in range(3):
        assert (await post(client, room, "ann", f"m{i}")).status_code == 201
    page = await client.get(url(room, "/messages"))
    assert page.status_code == 200
    body = page.json()
    assert [m["body"] for m in body["items"]] == ["m2", "m1", "m0"]
    assert [m["id"] for m in body["items"]] == [3, 2, 1]
    assert {m["author"] for m in body["items"]} == {"ann"}
    assert body["total"] is None
    assert body["has_more"] is False


async def test_history_pages_follow_the_cursor(client: httpx.AsyncClient, room: Room) -> None:
    """limit + cursor walk the history without overlap; has_more says when to stop."""
    for i in range(5):
        await post(client, room, "ann", f"m{i}")
    first = (await client.get(url(room, "/messages?limit=2"))).json()
    assert first["has_more"] is True
    second = (
        await client.get(
            url(room, "/messages"), params={"limit": 2, "before": first["next_before"]}
        )
    ).json()
    assert [m["id"] for m in first["items"] + second["items"]] == [5, 4, 3, 2]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x"])
async def test_limits_outside_1_to_100_are_422(
    client: httpx.AsyncClient, room: Room, query: str
) -> None:
    """The page size must be 1-100."""
    response = await client.get(url(room, f"/messages?{query}"))
    assert response.status_code == 422


async def test_bad_or_foreign_cursors_are_400(
    client: httpx.AsyncClient, room: Room, app: FastAPI
) -> None:
    """A forged, non-ASCII or other channel's cursor is a 400, never a 500."""
    other = await make_room(app.state.runtime.core, prefix="b")
    for i in range(3):
        await post(client, room, "ann", f"m{i}")
        await client.post(url(other, "/messages"), json={"body": "x"}, headers=other.auth("ann"))
    foreign = (await client.get(url(other, "/messages?limit=1"))).json()["next_before"]
    for cursor in ("garbage", "é.é", foreign, foreign[:-2] + "xx"):
        response = await client.get(url(room, "/messages"), params={"before": cursor})
        assert response.status_code == 400, cursor
        assert response.json()["error"]["code"] == "bad_cursor"


async def test_deleted_messages_leave_history(client: httpx.AsyncClient, room: Room) -> None:
    """A moderator's delete removes the message from history; deleting again is fine."""
    await post(client, room, "ann", "keep")
    await post(client, room, "ann", "drop")
    assert (
        await client.delete(url(room, "/messages/2"), headers=room.auth("mod"))
    ).status_code == 204
    assert (
        await client.delete(url(room, "/messages/2"), headers=room.auth("mod"))
    ).status_code == 204
    assert (
        await client.delete(url(room, "/messages/99"), headers=room.auth("mod"))
    ).status_code == 404
    items = (await client.get(url(room, "/messages"))).json()["items"]
    assert [m["body"] for m in items] == ["keep"]


async def test_xss_payloads_are_stored_raw_and_returned_as_json_text(
    client: httpx.AsyncClient, room: Room
) -> None:
    """Markup is kept as typed and only ever leaves as a JSON string (the page renders text)."""
    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    assert (await post(client, room, "ann", payload)).status_code == 201
    response = await client.get(url(room, "/messages"))
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["items"][0]["body"] == payload


async def test_private_history_needs_membership_or_a_playback_token(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Private chat is a 404 to outsiders; the owner, moderators and token holders may read."""
    private = await make_room(app.state.runtime.core, visibility="private", prefix="p")
    assert (await client.get(url(private, "/messages"))).status_code == 404
    assert (
        await client.get(url(private, "/messages"), headers=private.auth("ann"))
    ).status_code == 404
    assert (
        await client.get(url(private, "/messages"), headers=private.auth("mod"))
    ).status_code == 200
    token = tokens.issue("test-secret-key", f"channel:{private.channel_id}")
    opened = await client.get(url(private, "/messages"), params={"token": token})
    assert opened.status_code == 200
    wrong = tokens.issue("test-secret-key", f"channel:{private.channel_id + 1000}")
    assert (await client.get(url(private, "/messages"), params={"token": wrong})).status_code == 404
    assert (await client.get(url(private, "/messages"), params={"token": "é"})).status_code == 404


async def test_anonymous_reading_can_be_switched_off(client: httpx.AsyncClient, room: Room) -> None:
    """With anonymous reading off, history needs a signed-in caller (401 otherwise)."""
    changed = await client.patch(
        url(room, "/settings"), json={"anonymous_read": False}, headers=room.auth("owner")
    )
    assert changed.status_code == 200
    assert (await client.get(url(room, "/messages"))).status_code == 401
    assert (await client.get(url(room, "/messages"), headers=room.auth("bob"))).status_code == 200


async def test_a_nonce_makes_a_retried_post_safe(client: httpx.AsyncClient, room: Room) -> None:
    """The same nonce twice stores one message and returns it both times."""
    first = await post(client, room, "ann", "hello", nonce="abc-1")
    again = await post(client, room, "ann", "hello", nonce="abc-1")
    assert first.json()["message"]["id"] == again.json()["message"]["id"] == 1
    assert len((await client.get(url(room, "/messages"))).json()["items"]) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"body": ""},
        {"body": "x" * 501},
        {"body": "a\x00b"},
        {"body": 5},
        {"text": "hi"},
        {"body": "x", "admin": True},
    ],
)
async def test_bad_post_bodies_are_422(
    client: httpx.AsyncClient, room: Room, body: dict[str, object]
) -> None:
    """Empty, too long, control characters, wrong types and unknown fields are refused."""
    response = await client.post(url(room, "/messages"), json=body, headers=room.auth("ann"))
    assert response.status_code == 422
    assert response.json()["error"]["message"]


async def test_anonymous_posts_are_401(client: httpx.AsyncClient, room: Room) -> None:
    """Posting needs an account."""
    response = await client.post(url(room, "/messages"), json={"body": "hi"})
    assert response.status_code == 401


async def test_bans_and_timeouts_are_enforced_and_lifted(
    client: httpx.AsyncClient, room: Room
) -> None:
    """Banned and timed-out users cannot post (403 with Retry-After for timeouts) until lifted."""
    ban = await client.put(
        url(room, "/bans/ann"), json={"reason": "spam"}, headers=room.auth("mod")
    )
    assert ban.status_code == 200
    refused = await post(client, room, "ann", "hi")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "banned"
    assert (
        await client.delete(url(room, "/bans/ann"), headers=room.auth("mod"))
    ).status_code == 204
    assert (await post(client, room, "ann", "back")).status_code == 201
    timeout = await client.put(
        url(room, "/timeouts/bob"), json={"seconds": 600}, headers=room.auth("mod")
    )
    assert timeout.json()["kind"] == "timeout"
    refused = await post(client, room, "bob", "hi")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "timed_out"
    assert int(refused.headers["Retry-After"]) > 590
    assert (
        await client.delete(url(room, "/timeouts/bob"), headers=room.auth("mod"))
    ).status_code == 204
    assert (await post(client, room, "bob", "free")).status_code == 201


async def test_staff_cannot_be_banned_and_unknown_users_are_404(
    client: httpx.AsyncClient, room: Room
) -> None:
    """Owners and moderators are not bannable (409); a ban of nobody is a 404."""
    for target in ("owner", "mod"):
        response = await client.put(
            url(room, f"/bans/{target}"), json={}, headers=room.auth("owner")
        )
        assert response.status_code == 409, target
    assert (
        await client.put(url(room, "/bans/nobody"), json={}, headers=room.auth("owner"))
    ).status_code == 404
    assert (
        await client.delete(url(room, "/bans/ann"), headers=room.auth("owner"))
    ).status_code == 404


async def test_moderation_is_404_to_non_members_and_other_channels_moderators(
    client: httpx.AsyncClient, room: Room, app: FastAPI
) -> None:
    """Viewers, strangers and a moderator of another channel all get 404, changing nothing."""
    other = await make_room(app.state.runtime.core, prefix="o")
    await post(client, room, "ann", "target")
    calls = [
        ("DELETE", "/messages/1", None),
        ("PUT", "/bans/bob", {}),
        ("DELETE", "/bans/bob", None),
        ("PUT", "/timeouts/bob", {"seconds": 60}),
        ("DELETE", "/timeouts/bob", None),
        ("GET", "/restrictions", None),
        ("GET", "/filters", None),
        ("POST", "/filters", {"kind": "word", "pattern": "x"}),
        ("DELETE", "/filters/1", None),
        ("GET", "/held", None),
        ("POST", "/held/1/approve", None),
        ("POST", "/held/1/reject", None),
        ("GET", "/log", None),
        ("PATCH", "/settings", {"slow_mode_seconds": 5}),
    ]
    for headers in (room.auth("ann"), other.auth("mod"), other.auth("owner")):
        for method, path, body in calls:
            response = await client.request(method, url(room, path), json=body, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
    assert len((await client.get(url(room, "/messages"))).json()["items"]) == 1


async def test_moderator_permissions_are_respected(
    client: httpx.AsyncClient, room: Room, app: FastAPI
) -> None:
    """A moderator without filter rights cannot manage filters or slow mode; with them, can."""
    assert (
        await client.post(
            url(room, "/filters"), json={"kind": "word", "pattern": "x"}, headers=room.auth("mod")
        )
    ).status_code == 404
    from stagecast.channels import service as channels

    await channels.set_moderator(
        app.state.runtime.core.db,
        room.channel_id,
        "mod",
        channels.Grant(can_manage_filters=True),
        1,
    )
    added = await client.post(
        url(room, "/filters"), json={"kind": "word", "pattern": "x"}, headers=room.auth("mod")
    )
    assert added.status_code == 201
    slow = await client.patch(
        url(room, "/settings"), json={"slow_mode_seconds": 3}, headers=room.auth("mod")
    )
    assert slow.status_code == 200
    anonymous = await client.patch(
        url(room, "/settings"), json={"anonymous_read": False}, headers=room.auth("mod")
    )
    assert anonymous.status_code == 404


async def test_slow_mode_spares_moderators(client: httpx.AsyncClient, room: Room) -> None:
    """In slow mode a second quick post is a 429 with Retry-After; moderators are exempt."""
    await client.patch(
        url(room, "/settings"), json={"slow_mode_seconds": 30}, headers=room.auth("owner")
    )
    assert (await post(client, room, "ann", "one")).status_code == 201
    refused = await post(client, room, "ann", "two")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "slow_mode"
    assert int(refused.headers["Retry-After"]) >= 29
    for i in range(3):
        assert (await post(client, room, "mod", f"mod {i}")).status_code == 201


async def test_the_per_user_rate_limit_answers_429(
    client: httpx.AsyncClient, room: Room, app: FastAPI
) -> None:
    """Past the per-user limit, posts get 429 rate_limited with Retry-After."""
    app.state.runtime.core.settings.chat_rate_limit = 3
    for i in range(3):
        assert (await post(client, room, "ann", f"m{i}")).status_code == 201
    refused = await post(client, room, "ann", "too many")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


async def test_filters_block_or_hold_and_hostile_patterns_are_refused(
    client: httpx.AsyncClient, room: Room
) -> None:
    """A block filter refuses (422 blocked), a hold filter queues (202); bad patterns are 422."""
    owner = room.auth("owner")
    hostile = await client.post(
        url(room, "/filters"), json={"kind": "pattern", "pattern": r"(a)\1"}, headers=owner
    )
    assert hostile.status_code == 422
    assert hostile.json()["error"]["code"] == "invalid_filter"
    block = await client.post(
        url(room, "/filters"), json={"kind": "word", "pattern": "spam"}, headers=owner
    )
    hold = await client.post(
        url(room, "/filters"),
        json={"kind": "pattern", "pattern": r"https?://", "action": "hold"},
        headers=owner,
    )
    assert block.status_code == hold.status_code == 201
    refused = await post(client, room, "ann", "SPAM here")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "blocked"
    held = await post(client, room, "ann", "see http://example.com")
    assert held.status_code == 202
    assert held.json()["status"] == "held"
    assert (await post(client, room, "mod", "spam is fine for mods")).status_code == 201
    listed = (await client.get(url(room, "/filters"), headers=room.auth("mod"))).json()["items"]
    assert [f["pattern"] for f in listed] == ["spam", "https?://"]
    assert (
        await client.delete(url(room, f"/filters/{block.json()['id']}"), headers=owner)
    ).status_code == 204
    assert (await post(client, room, "ann", "spam now allowed")).status_code == 201


async def test_held_messages_are_approved_or_rejected_once(
    client: httpx.AsyncClient, room: Room
) -> None:
    """Approval publishes a held message with the next id; a second decision is a 404."""
    await client.post(
        url(room, "/filters"),
        json={"kind": "phrase", "pattern": "link", "action": "hold"},
        headers=room.auth("owner"),
    )
    first = (await post(client, room, "ann", "a link")).json()["held_id"]
    second = (await post(client, room, "bob", "another link")).json()["held_id"]
    queue = (await client.get(url(room, "/held"), headers=room.auth("mod"))).json()
    assert [h["id"] for h in queue["items"]] == [first, second]
    approved = await client.post(url(room, f"/held/{first}/approve"), headers=room.auth("mod"))
    assert approved.json()["message"]["body"] == "a link"
    assert (
        await client.post(url(room, f"/held/{first}/reject"), headers=room.auth("mod"))
    ).status_code == 404
    assert (
        await client.post(url(room, f"/held/{second}/reject"), headers=room.auth("mod"))
    ).status_code == 200
    history = (await client.get(url(room, "/messages"))).json()["items"]
    assert [(m["id"], m["author"]) for m in history] == [(1, "ann")]


async def test_the_moderation_log_records_who_did_what_to_whom(
    client: httpx.AsyncClient, room: Room
) -> None:
    """Every action is logged with actor and target, newest first, keyset-paged."""
    await post(client, room, "ann", "bad")
    await client.delete(url(room, "/messages/1"), headers=room.auth("mod"))
    await client.put(
        url(room, "/timeouts/ann"),
        json={"seconds": 60, "reason": "cool off"},
        headers=room.auth("mod"),
    )
    await client.put(url(room, "/bans/bob"), json={"reason": "spam"}, headers=room.auth("owner"))
    first = (await client.get(url(room, "/log?limit=2"), headers=room.auth("mod"))).json()
    rest = (
        await client.get(
            url(room, "/log"), params={"before": first["next_before"]}, headers=room.auth("mod")
        )
    ).json()
    entries = first["items"] + rest["items"]
    assert [(e["action"], e["actor"], e["target"]) for e in entries] == [
        ("ban", "owner", "bob"),
        ("timeout", "mod", "ann"),
        ("delete", "mod", "ann"),
    ]
    assert entries[2]["message_id"] == 1
    assert rest["next_before"] is None


async def test_restrictions_list_bans_and_running_timeouts(
    client: httpx.AsyncClient, room: Room, app: FastAPI
) -> None:
    """The list shows bans and live timeouts, newest first, paged by cursor."""
    core = app.state.runtime.core
    for name in ("cee1", "cee2", "cee3"):
        await quick_user(core.db, name)
        await client.put(url(room, f"/bans/{name}"), json={}, headers=room.auth("owner"))
    await client.put(url(room, "/timeouts/ann"), json={"seconds": 60}, headers=room.auth("owner"))
    first = (await client.get(url(room, "/restrictions?limit=3"), headers=room.auth("mod"))).json()
    rest = (
        await client.get(
            url(room, "/restrictions"),
            params={"before": first["next_before"]},
            headers=room.auth("mod"),
        )
    ).json()
    names = [r["username"] for r in first["items"] + rest["items"]]
    assert sorted(names) == ["ann", "cee1", "cee2", "cee3"]
    assert len(set(names)) == 4
    kinds = {r["username"]: r["kind"] for r in first["items"] + rest["items"]}
    assert kinds["ann"] == "timeout"


async def test_bans_reach_the_cache_of_this_process_at_once(
    client: httpx.AsyncClient, room: Room, app: FastAPI
) -> None:
    """After a ban, the very next post is refused (the cached 'not banned' is dropped)."""
    chat: Chat = app.state.runtime.chat
    assert (await post(client, room, "ann", "warm the cache")).status_code == 201
    assert await chat.rules.restriction(room.channel_id, 3) is None
    await client.put(url(room, "/bans/ann"), json={}, headers=room.auth("owner"))
    assert (await post(client, room, "ann", "after")).status_code == 403
