"""The chat socket on a live server: delivery, resume, moderation, bad input and abuse."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stagecast.auth import service as accounts
from stagecast.bus import BusUnavailable
from stagecast.channels import tokens
from stagecast.chat import frames
from stagecast.chat.hub import CHANNEL_TOPIC, ChatEvent
from stagecast.chat.messages import Draft
from stagecast.chat.rules import TOPIC, Announcement
from tests.chat.conftest import (
    Frame,
    Live,
    Room,
    close_code,
    frame_where,
    hello,
    make_room,
    next_frame,
    of_type,
    open_socket,
)

MESSAGE = of_type("message")


async def say(ws: ClientConnection, body: str, nonce: str | None = None) -> None:
    """Send a post frame."""
    await ws.send(json.dumps({"type": "post", "body": body, "nonce": nonce}))


async def joined(
    live: Live, room: Room, who: str | None = None, **query: object
) -> ClientConnection:
    """Open a socket as ``who`` (anonymous if None) and read its hello."""
    ws = await open_socket(live.socket_url(room.slug, **query), room.auth(who) if who else None)
    await hello(ws)
    return ws


async def test_a_post_reaches_every_socket_in_order_with_its_nonce(live: Live, room: Room) -> None:
    """Every socket (the author's and an anonymous one too) gets each message once, in order."""
    ann, bob, anon = [await joined(live, room, who) for who in ("ann", "bob", None)]
    for i in range(5):
        await say(ann if i % 2 == 0 else bob, f"m{i}", nonce=f"n{i}")
    seen = []
    for ws in (ann, bob, anon):
        got = [await frame_where(ws, MESSAGE) for _ in range(5)]
        assert [f["id"] for f in got] == [1, 2, 3, 4, 5]
        assert sorted(f["body"] for f in got) == [f"m{i}" for i in range(5)]
        assert all(f["nonce"] == "n" + f["body"][1:] for f in got)
        assert all(f["sent_at"].endswith("+00:00") for f in got)
        seen.append([(f["id"], f["body"], f["author"]) for f in got])
    assert seen[0] == seen[1] == seen[2]
    assert live.chat.hub.stats.posted == 5


async def test_hello_says_what_the_caller_may_do(live: Live, room: Room) -> None:
    """Viewers may post, moderators see their powers, anonymous readers may only read."""
    viewer = await open_socket(live.socket_url(room.slug), room.auth("ann"))
    moderator = await open_socket(live.socket_url(room.slug), room.auth("mod"))
    anonymous = await open_socket(live.socket_url(room.slug))
    seen = [await hello(ws) for ws in (viewer, moderator, anonymous)]
    assert (seen[0]["user"], seen[0]["can_post"], seen[0]["moderator"]) == ("ann", True, None)
    assert seen[1]["moderator"] == {"delete": True, "timeout": True, "ban": True, "filters": False}
    assert (seen[2]["user"], seen[2]["can_post"]) == (None, False)
    await say(anonymous, "hello?")
    error = await frame_where(anonymous, of_type("error"))
    assert error["code"] == "unauthorized"


async def test_resume_sends_exactly_what_was_missed_then_live(live: Live, room: Room) -> None:
    """Reconnecting with last_id delivers the missed messages once, then live ones, no gap."""
    ann = await joined(live, room, "ann")
    reader = await joined(live, room, "bob")
    await say(ann, "one")
    first = await frame_where(reader, MESSAGE)
    await reader.close()
    for body in ("two", "three"):
        await say(ann, body)
    await frame_where(ann, lambda f: f.get("body") == "three")
    back = await open_socket(live.socket_url(room.slug, last_id=first["id"]), room.auth("bob"))
    assert (await hello(back))["last_id"] == 3
    missed = [await next_frame(back) for _ in range(3)]
    assert [f.get("body") for f in missed[:2]] == ["two", "three"]
    assert missed[2] == {"type": "resumed", "last_id": 3, "count": 2}
    await say(ann, "four")
    live_one = await frame_where(back, MESSAGE)
    assert (live_one["id"], live_one["body"]) == (4, "four")


async def test_resume_too_far_back_says_reset(live: Live, room: Room) -> None:
    """Past chat_resume_limit missed messages, the client is told to reload instead."""
    live.core.settings.chat_resume_limit = 3
    for i in range(5):
        await live.chat.writer.store(room.channel_id, Draft(3, "ann", f"m{i}"))
    back = await open_socket(live.socket_url(room.slug, last_id=0), room.auth("bob"))
    await hello(back)
    assert (await next_frame(back))["type"] == "reset"


async def test_messages_arrive_in_id_order_even_when_the_bus_reorders_them(
    live: Live, room: Room
) -> None:
    """Out-of-order bus delivery is put back in order; a missing id is read from the database."""
    reader = await joined(live, room, "bob")
    stored = [
        await live.chat.writer.store(room.channel_id, Draft(3, "ann", f"m{i}")) for i in range(4)
    ]
    published = [frames.Message.of(m) for m, _ in stored]
    # 2 before 1, and 3 never published: the room waits, then reads 3 back itself.
    for frame in (published[1], published[0], published[3]):
        await CHANNEL_TOPIC.publish(live.core.bus, ChatEvent(frame), room.channel_id)
    got = [await frame_where(reader, MESSAGE) for _ in range(4)]
    assert [f["id"] for f in got] == [1, 2, 3, 4]
    assert live.chat.hub.stats.gap_fills >= 1


async def test_a_message_whose_publish_failed_still_arrives(
    live: Live, room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the bus refuses after commit, the message is stored and reaches sockets from the DB."""
    reader = await joined(live, room, "bob")
    ann = await joined(live, room, "ann")

    async def refuse(topic: str, payload: dict[str, object]) -> None:
        raise BusUnavailable("bus down")

    monkeypatch.setattr(live.core.bus, "publish", refuse)
    await say(ann, "through the database")
    got = await frame_where(reader, MESSAGE)
    assert (got["id"], got["body"]) == (1, "through the database")


async def test_a_malformed_bus_message_is_skipped_and_the_room_keeps_delivering(
    live: Live, room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    """What is not a ChatEvent on chat.<id> is logged and dropped; the next post arrives."""
    reader = await joined(live, room, "bob")
    ann = await joined(live, room, "ann")
    name = CHANNEL_TOPIC.name(room.channel_id)
    forged = {"type": "message", "id": 1, "author": "x", "body": "forged", "sent_at": "now"}
    with caplog.at_level(logging.WARNING, logger="stagecast.chat.hub"):
        for bad in (forged, {"frame": {"type": "message", "id": 1, "author": 5}}, {"frame": 7}):
            await live.core.bus.publish(name, bad)
        await say(ann, "real")
        got = await frame_where(reader, MESSAGE)
    assert (got["id"], got["body"]) == (1, "real")
    skipped = [r for r in caplog.records if "malformed bus message" in r.getMessage()]
    assert len(skipped) == 3


async def test_a_malformed_moderation_announcement_is_skipped(live: Live, room: Room) -> None:
    """After a message that is not an Announcement, the next one (a ban) still applies."""
    ann = await joined(live, room, "ann")
    ann_id = (await accounts.get_account(live.core.db, "ann")).id
    await live.core.bus.publish(TOPIC.name(), {"channel_id": "not a number"})
    # Published as another process would: only this process's listener applies it.
    await TOPIC.publish(live.core.bus, Announcement(room.channel_id, ann_id, banned=True))
    assert (await frame_where(ann, of_type("error")))["code"] == "banned"
    assert await close_code(ann) == 4403


async def test_a_bus_gap_makes_the_room_resynchronise(live: Live, room: Room) -> None:
    """After a Gap (overflow, lost Redis), messages stored meanwhile are read from the DB."""
    reader = await joined(live, room, "bob")
    await live.chat.writer.store(room.channel_id, Draft(3, "ann", "lost on the bus"))
    hub_room = live.chat.hub.room(room.channel_id)
    assert hub_room is not None
    hub_room._sub.gap("test")  # type: ignore[union-attr]  # what a lost Redis connection does
    got = await frame_where(reader, MESSAGE)
    assert got["body"] == "lost on the bus"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('"post"', "invalid_frame"),
        ('{"body": "no type"}', "invalid_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "post"}', "invalid"),
        ('{"type": "post", "body": 7}', "invalid"),
        ('{"type": "post", "body": ""}', "invalid"),
        ('{"type": "post", "body": "x", "nonce": "bad nonce!"}', "invalid"),
        ('{"type": "post", "body": "bell\\u0007"}', "invalid"),
        ("[" * 5000, "invalid_json"),  # deeper than the JSON parser recurses
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_open(
    live: Live, room: Room, frame: str, code: str
) -> None:
    """Malformed or unknown frames are answered with an error; the socket keeps working."""
    ann = await joined(live, room, "ann")
    await ann.send(frame)
    error = await frame_where(ann, of_type("error"))
    assert error["code"] == code
    assert error["message"]
    await say(ann, "still here")
    assert (await frame_where(ann, MESSAGE))["body"] == "still here"


async def test_binary_and_oversized_frames_are_refused_and_huge_ones_close(
    live: Live, room: Room
) -> None:
    """A binary frame or one over the soft limit gets an error; one over the hard limit, 1009."""
    ann = await joined(live, room, "ann", max_size=None)
    await ann.send(b"\x00\x01")
    assert (await frame_where(ann, of_type("error")))["code"] == "invalid_frame"
    limit = live.core.settings.chat_max_frame_bytes
    await ann.send(json.dumps({"type": "post", "body": "x" * limit}))
    assert (await frame_where(ann, of_type("error")))["code"] == "frame_too_large"
    await ann.send("x" * (limit * 8 + 1))
    assert await close_code(ann) == 1009


async def test_flooding_gets_error_frames_not_a_disconnect(live: Live, room: Room) -> None:
    """Posting past the per-user limit yields rate_limited errors; the socket stays usable."""
    live.core.settings.chat_rate_limit = 5
    ann = await joined(live, room, "ann")
    for i in range(8):
        await say(ann, f"m{i}")
    errors: list[Frame] = []
    delivered = 0
    while delivered + len(errors) < 8:
        frame = await next_frame(ann)
        if frame["type"] == "message":
            delivered += 1
        elif frame["type"] == "error":
            errors.append(frame)
    assert delivered == 5
    assert {e["code"] for e in errors} == {"rate_limited"}
    assert all(e["retry_after"] > 0 for e in errors)
    await ann.send(json.dumps({"type": "ping"}))
    assert (await frame_where(ann, of_type("pong")))["type"] == "pong"


async def test_markup_reaches_every_socket_as_it_was_sent(live: Live, room: Room) -> None:
    """Chat text travels raw (the page escapes it): author and anonymous reader get it verbatim."""
    ann = await joined(live, room, "ann")
    anon = await joined(live, room)
    await say(ann, "hi <b>there</b> & <script>x</script>", nonce="n1")
    for ws in (ann, anon):
        got = await frame_where(ws, MESSAGE)
        assert (got["body"], got["author"], got["nonce"]) == (
            "hi <b>there</b> & <script>x</script>",
            "ann",
            "n1",
        )


async def _after_the_storm(ws: ClientConnection, seen: Counter[str]) -> None:
    """Post a marker until the server echoes one, counting the storm's replies before it.

    Frames are handled in order, so the echo means every storm frame was handled; a marker
    sent while the bucket is empty is dropped, hence the retry (the bucket refills at 10/s).
    """
    for attempt in range(20):
        await say(ws, "after the storm", nonce=f"after{attempt}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                while True:
                    frame = await next_frame(ws)
                    if frame["type"] == "message" and frame["nonce"].startswith("after"):
                        return
                    seen[frame["type"]] += 1
                    if frame["type"] == "error":
                        assert frame["code"] == "rate_limited", frame
                        assert frame["retry_after"] > 0
    raise AssertionError("no frame was handled after the storm")


async def test_a_frame_storm_is_metered_per_socket(live: Live, room: Room) -> None:
    """Hundreds of frames at once: the excess is dropped with a rate_limited error, no close."""
    ann = await joined(live, room, "ann")
    started = time.monotonic()
    for _ in range(300):
        await ann.send('{"type": "ping"}')
    seen: Counter[str] = Counter()
    await _after_the_storm(ann, seen)
    elapsed = time.monotonic() - started
    assert seen["error"] >= 1
    # A burst of 20, then 10 a second: everything past that got no answer.
    assert 20 <= seen["pong"] <= 20 + 10 * elapsed + 1
    assert set(seen) <= {"pong", "error"}
    assert ann.close_code is None  # and it just delivered the marker: still open


async def test_private_channels_need_access_on_the_socket_too(live: Live) -> None:
    """A private channel's socket is 4404 to outsiders; members and token holders get in."""
    private = await make_room(live.core, visibility="private", prefix="p")
    for headers in (None, private.auth("ann")):
        outsider = await open_socket(live.socket_url(private.slug), headers)
        assert (await next_frame(outsider))["code"] == "not_found"
        assert await close_code(outsider) == 4404
    await hello(await open_socket(live.socket_url(private.slug), private.auth("mod")))
    token = tokens.issue("test-secret-key", f"channel:{private.channel_id}")
    await hello(await open_socket(live.socket_url(private.slug, token=token)))


async def test_bad_credentials_and_closed_anonymous_reading_are_4401(
    live: Live, room: Room, http: httpx.AsyncClient
) -> None:
    """A forged token is 4401; with anonymous reading off, so is an anonymous socket."""
    forged = await open_socket(live.socket_url(room.slug), {"Authorization": "Bearer sct_bad"})
    assert await close_code(forged) == 4401
    path = f"/api/v1/channels/{room.slug}/chat/settings"
    await http.patch(path, json={"anonymous_read": False}, headers=room.auth("owner"))
    anonymous = await open_socket(live.socket_url(room.slug))
    assert (await next_frame(anonymous))["code"] == "unauthorized"
    assert await close_code(anonymous) == 4401
    await hello(await open_socket(live.socket_url(room.slug), room.auth("bob")))


async def test_cookie_sockets_from_another_site_are_refused(live: Live, room: Room) -> None:
    """With the session cookie, a foreign Origin is 4403 bad_origin; the same origin gets in."""
    ann = await accounts.get_account(live.core.db, "ann")
    cookie, _ = await accounts.open_session(live.core.db, ann.id, 1)
    headers = {"Cookie": f"stagecast_session={cookie}"}
    host = live.http.removeprefix("http://")
    hostile = await open_socket(live.socket_url(room.slug), headers, origin="http://evil.example")
    assert (await next_frame(hostile))["code"] == "bad_origin"
    assert await close_code(hostile) == 4403
    friendly = await open_socket(live.socket_url(room.slug), headers, origin=f"http://{host}")
    assert (await hello(friendly))["user"] == "ann"


async def test_a_ban_closes_the_banned_users_sockets_and_keeps_them_out(
    live: Live, room: Room, http: httpx.AsyncClient
) -> None:
    """Banning closes every socket of that user with 4403; reconnecting is refused too."""
    ann = await joined(live, room, "ann")
    bob = await joined(live, room, "bob")
    path = f"/api/v1/channels/{room.slug}/chat/bans/ann"
    assert (await http.put(path, json={"reason": "x"}, headers=room.auth("mod"))).status_code == 200
    assert (await frame_where(ann, of_type("error")))["code"] == "banned"
    assert await close_code(ann) == 4403
    again = await open_socket(live.socket_url(room.slug), room.auth("ann"))
    assert (await next_frame(again))["code"] == "banned"
    assert await close_code(again) == 4403
    await say(bob, "bob is fine")
    assert (await frame_where(bob, MESSAGE))["body"] == "bob is fine"


async def test_a_timeout_is_announced_and_enforced_on_the_socket(
    live: Live, room: Room, http: httpx.AsyncClient
) -> None:
    """A timed-out user is told until when, and their posts get timed_out errors."""
    ann = await joined(live, room, "ann")
    path = f"/api/v1/channels/{room.slug}/chat/timeouts/ann"
    await http.put(path, json={"seconds": 120}, headers=room.auth("mod"))
    notice = await frame_where(ann, of_type("timeout"))
    assert notice["until"]
    await say(ann, "let me talk", nonce="t1")
    error = await frame_where(ann, of_type("error"))
    assert (error["code"], error["nonce"]) == ("timed_out", "t1")
    assert error["retry_after"] > 100


async def test_deletions_and_reviews_reach_the_right_sockets(
    live: Live, room: Room, http: httpx.AsyncClient
) -> None:
    """Deleted ids reach everyone; held messages reach moderators for review, then publish."""
    base = f"/api/v1/channels/{room.slug}/chat"
    await http.post(
        f"{base}/filters",
        json={"kind": "phrase", "pattern": "link", "action": "hold"},
        headers=room.auth("owner"),
    )
    ann, bob, mod = [await joined(live, room, who) for who in ("ann", "bob", "mod")]
    await say(ann, "plain")
    await say(ann, "a link", nonce="h1")
    held = await frame_where(ann, of_type("held"))
    assert held["nonce"] == "h1"
    review = await frame_where(mod, of_type("review"))
    assert (review["author"], review["body"]) == ("ann", "a link")
    await http.post(f"{base}/held/{review['id']}/approve", headers=room.auth("mod"))
    approved = [await frame_where(bob, MESSAGE) for _ in range(2)]
    assert [f["body"] for f in approved] == ["plain", "a link"]
    await http.delete(f"{base}/messages/1", headers=room.auth("mod"))
    for ws in (ann, bob, mod):
        assert (await frame_where(ws, of_type("deleted")))["id"] == 1


async def test_heartbeats_arrive_when_the_channel_is_quiet(live: Live, room: Room) -> None:
    """Every chat_heartbeat_seconds the server sends a ping frame."""
    live.core.settings.chat_heartbeat_seconds = 0.2
    ann = await joined(live, room, "ann")
    assert (await frame_where(ann, of_type("ping"), timeout=3))["type"] == "ping"


async def test_shutdown_tells_clients_to_reconnect(live: Live, room: Room) -> None:
    """Stopping the server closes sockets with 1012 (service restart)."""
    ann = await joined(live, room, "ann")
    await live.chat.hub.close()
    assert await close_code(ann) == 1012


async def test_unknown_channels_are_4404_and_bad_last_ids_are_4400(live: Live, room: Room) -> None:
    """A socket for a channel that does not exist, or with a malformed last_id, is refused."""
    missing = await open_socket(live.socket_url("no-such-room"))
    assert await close_code(missing) == 4404
    bad = await open_socket(live.socket_url(room.slug, last_id="-1"))
    assert (await next_frame(bad))["code"] == "bad_request"
    assert await close_code(bad) == 4400


async def test_a_plain_http_request_to_the_socket_is_refused(live: Live, room: Room) -> None:
    """Without the WebSocket upgrade the endpoint does not answer like a page."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{live.http}/api/v1/channels/{room.slug}/chat/socket")
    assert response.status_code in (400, 404, 426)
    with pytest.raises((InvalidStatus, ConnectionClosed, OSError)):
        await open_socket(live.socket_url(room.slug).replace("/socket", "/sockets"))
