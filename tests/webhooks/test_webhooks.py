"""Webhooks: signatures, URL checks, owner-only REST, durable signed deliveries with retries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.channels.policy import Grant
from stagecast.channels.service import set_moderator
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.errors import Unprocessable
from stagecast.live import service as live_service
from stagecast.vod.events import VOD_TOPIC, VodReady
from stagecast.webhooks import deliveries as delivery
from stagecast.webhooks import service as webhooks
from stagecast.webhooks.deliveries import Policy
from stagecast.webhooks.models import webhook_delivery
from stagecast.webhooks.service import SIGNATURE_HEADER, Event, signature, verify
from tests.conftest import RunningServer
from tests.studio.conftest import fake_session, owned_channel, person
from tests.webhooks.receiver import receiving

SECRET = "whsec_test"
BODY = b'{"event":"stream.started"}'


def test_a_signature_verifies_and_nothing_else_does() -> None:
    """The receiver's check: right secret and body within the tolerance, or refused."""
    now = int(time.time())
    header = signature(SECRET, BODY, now)
    assert header.startswith(f"t={now},v1=")
    assert verify(SECRET, BODY, header)
    assert not verify(SECRET, BODY + b" ", header)
    assert not verify("whsec_other", BODY, header)
    assert not verify(SECRET, BODY, "v1=abc")
    assert not verify(SECRET, BODY, "t=soon,v1=abc")


def test_an_old_signature_is_a_replay() -> None:
    """A request signed more than 5 minutes ago is refused even with the right MAC."""
    old = int(time.time()) - 301
    assert not verify(SECRET, BODY, signature(SECRET, BODY, old))
    assert verify(SECRET, BODY, signature(SECRET, BODY, old), tolerance=600)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "https://user:pw@example.com/hook",
        "http:///nohost",
        "http://10.0.0.5/hook",
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/hook",
        "https://example.com:0/hook",
        "https://example.com/" + "x" * 2100,
    ],
)
def test_webhook_urls_are_http_to_public_hosts(url: str) -> None:
    """Only http(s), no credentials, and (by default) no private, loopback or metadata address."""
    with pytest.raises(Unprocessable):
        webhooks.validate_url(url, allow_private=False)


def test_private_urls_are_allowed_when_configured() -> None:
    """A LAN or localhost receiver works once STAGECAST_WEBHOOK_ALLOW_PRIVATE is set."""
    assert webhooks.validate_url("http://127.0.0.1:9/h", allow_private=True)
    assert webhooks.validate_url("https://hooks.example.com/x?a=1", allow_private=False)


@pytest.fixture
async def http(db_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running server."""
    async with httpx.AsyncClient(base_url=db_server.url, timeout=10) as client:
        yield client


async def test_owners_manage_webhooks_and_nobody_else_sees_them(
    db_server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Create (secret shown once), list, change, delete; moderators and strangers get 404."""
    db = db_server.core.db
    owner, channel = await owned_channel(db)
    moderator, stranger = await person(db), await person(db)
    await set_moderator(db, channel.id, moderator.account.username, Grant(), owner.account.id)
    base = f"/api/v1/channels/{channel.slug}/webhooks"
    created = await http.post(
        base,
        json={"url": "http://127.0.0.1:9/a", "events": ["stream.ended"]},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["secret"].startswith("whsec_")
    assert hook["events"] == ["stream.ended"]
    listed = (await http.get(base, headers=owner.headers)).json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    changed = await http.patch(
        f"{base}/{hook['id']}",
        json={"enabled": False, "events": ["vod.ready", "stream.started"]},
        headers=owner.headers,
    )
    assert changed.json()["enabled"] is False
    assert changed.json()["events"] == ["stream.started", "vod.ready"]
    for who in (moderator, stranger):
        assert (await http.get(base, headers=who.headers)).status_code == 404
        denied = await http.post(base, json={"url": "http://127.0.0.1:9/"}, headers=who.headers)
        assert denied.status_code == 404
    bad = await http.post(base, json={"url": "gopher://x"}, headers=owner.headers)
    assert bad.status_code == 422
    unknown = await http.post(
        base,
        json={"url": "http://127.0.0.1:9/", "events": ["stream.paused"]},
        headers=owner.headers,
    )
    assert unknown.status_code == 422
    extra = await http.post(
        base, json={"url": "http://127.0.0.1:9/", "x": 1}, headers=owner.headers
    )
    assert extra.status_code == 422
    assert (await http.delete(f"{base}/{hook['id']}", headers=owner.headers)).status_code == 204
    assert (await http.delete(f"{base}/{hook['id']}", headers=owner.headers)).status_code == 404
    for _ in range(webhooks.MAX_PER_CHANNEL):
        ok = await http.post(base, json={"url": "http://127.0.0.1:9/"}, headers=owner.headers)
        assert ok.status_code == 201
    full = await http.post(base, json={"url": "http://127.0.0.1:9/"}, headers=owner.headers)
    assert full.status_code == 409


async def test_stream_ended_is_signed_retried_with_backoff_and_logged(
    db_server: RunningServer, http: httpx.AsyncClient
) -> None:
    """500, 500, then 200: three signed attempts further and further apart, all in the log."""
    db = db_server.core.db
    owner, channel = await owned_channel(db)
    async with receiving([500, 500]) as receiver:
        created = await http.post(
            f"/api/v1/channels/{channel.slug}/webhooks",
            json={"url": receiver.url, "events": ["stream.ended"]},
            headers=owner.headers,
        )
        secret = created.json()["secret"]
        session_id = await fake_session(db, channel.id)
        hooks = db_server.runtime.live.hooks
        ended = await live_service.end_session(db, session_id, "test", hooks, states=("live",))
        assert ended is not None
        db_server.runtime.webhooks.dispatcher.wake()
        got = await receiver.wait_for(3)
    bodies = {r.body for r in got}
    assert len(bodies) == 1  # the same body every time; only the signature's time changes
    for request in got:
        assert verify(secret, request.body, request.headers[SIGNATURE_HEADER.lower()])
        assert request.headers["stagecast-event"] == "stream.ended"
    body = json.loads(got[0].body)
    assert body["event"] == "stream.ended"
    assert body["channel"] == {"id": channel.id, "slug": channel.slug}
    assert body["data"]["session_id"] == session_id
    assert body["data"]["reason"] == "test"
    # Backoff: the n-th retry waits base * 2^(n-1), up to half taken off (base 0.2 s here).
    assert got[1].at - got[0].at >= 0.1
    assert got[2].at - got[1].at >= 0.2
    hook_id = created.json()["id"]
    url = f"/api/v1/channels/{channel.slug}/webhooks/{hook_id}/deliveries"
    async with asyncio.timeout(10):
        while True:
            [entry] = (await http.get(url, headers=owner.headers)).json()["items"]
            if entry["state"] == "delivered":
                break
            await asyncio.sleep(0.05)
    assert entry["attempts"] == 3
    assert entry["last_status"] == 200
    assert [a["status"] for a in entry["attempt_log"]] == [500, 500, 200]
    assert entry["next_attempt_at"] is None
    assert entry["finished_at"] is not None


async def test_vod_ready_announced_twice_is_delivered_once(
    db_server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Every process hears vod.<channel>; the unique event key makes it one delivery."""
    db = db_server.core.db
    owner, channel = await owned_channel(db)
    dispatcher = db_server.runtime.webhooks.dispatcher
    async with receiving() as receiver:
        created = await http.post(
            f"/api/v1/channels/{channel.slug}/webhooks",
            json={"url": receiver.url, "events": ["vod.ready"]},
            headers=owner.headers,
        )
        async with asyncio.timeout(10):
            while channel.id not in dispatcher.watch.channels:
                await asyncio.sleep(0.02)
        announcement = VodReady(77, 5, channel.id, 12.0)
        # A third, different VOD after the two: announcements are handled in order, so once
        # its delivery is written, so is every delivery the two copies of 77 would make. A
        # malformed announcement between them is skipped without stopping the watch.
        marker = VodReady(78, 6, channel.id, 8.0)
        await VOD_TOPIC.publish(db_server.core.bus, announcement, channel.id)
        await VOD_TOPIC.publish(db_server.core.bus, announcement, channel.id)
        await db_server.core.bus.publish(f"vod.{channel.id}", {"type": "vod.ready", "vod_id": 79})
        await VOD_TOPIC.publish(db_server.core.bus, marker, channel.id)
        async with asyncio.timeout(20):
            while not any(json.loads(r.body)["data"]["vod_id"] == 78 for r in receiver.requests):
                await receiver.wait_for(len(receiver.requests) + 1)
        url = f"/api/v1/channels/{channel.slug}/webhooks/{created.json()['id']}/deliveries"
        async with asyncio.timeout(10):
            while True:
                items = (await http.get(url, headers=owner.headers)).json()["items"]
                if all(i["state"] == "delivered" for i in items):
                    break
                await asyncio.sleep(0.05)
        assert len(items) == 2  # one delivery per VOD, each sent (so every request is in)
        requests = receiver.requests
    bodies = sorted((json.loads(r.body) for r in requests), key=lambda b: b["data"]["vod_id"])
    assert [b["data"]["vod_id"] for b in bodies] == [77, 78]  # 77 arrived once
    assert bodies[0]["event"] == "vod.ready"
    assert bodies[0]["data"] == {"vod_id": 77, "session_id": 5, "duration": 12.0}


async def _add_deliveries(db: Database, webhook_id: int, count: int) -> None:
    async def unit(conn: AsyncConnection) -> None:
        now = utcnow()
        await conn.execute(
            insert(webhook_delivery),
            [
                {
                    "webhook_id": webhook_id,
                    "event": "stream.started",
                    "event_key": f"k{i}",
                    "payload": "{}",
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for i in range(count)
            ],
        )

    await db.run(unit, kind=Kind.WRITE)


async def test_two_workers_never_claim_the_same_delivery(db: Database) -> None:
    """Concurrent claims (SKIP LOCKED on PostgreSQL) split the due deliveries between them."""
    _, channel = await owned_channel(db)
    hook, _ = await webhooks.create_webhook(
        db, channel.id, "http://127.0.0.1:9/", ["stream.started"], allow_private=True
    )
    await _add_deliveries(db, hook.id, 30)
    policy = Policy()
    batches = await asyncio.gather(*(delivery.claim(db, policy, limit=10) for _ in range(4)))
    ids = [c.id for batch in batches for c in batch]
    assert len(ids) == len(set(ids)) == 30
    assert await delivery.claim(db, policy) == []  # leased, not due again yet


async def test_a_delivery_fails_for_good_after_its_attempts(db: Database) -> None:
    """A receiver that always fails: retried up to the limit, then ``failed``, every try logged."""
    _, channel = await owned_channel(db)
    policy = Policy(attempts=2, retry_base=0.01, retry_cap=0.01, allow_private=True)
    async with receiving(then=503) as receiver, httpx.AsyncClient() as client:
        await webhooks.create_webhook(
            db, channel.id, receiver.url, ["stream.started"], allow_private=True
        )
        event = Event("stream.started", "stream.started:1", channel.id, {"session_id": 1})
        assert await webhooks.enqueue(db, event) == 1
        assert await webhooks.enqueue(db, event) == 0  # the same event again: nothing new
        states: list[str] = []
        async with asyncio.timeout(10):
            while not states or states[-1] != "failed":
                for held in await delivery.claim(db, policy):
                    outcome = await delivery.send(client, held, policy)
                    states.append(await delivery.record(db, held, outcome, policy))
                await asyncio.sleep(0.02)
    assert states == ["pending", "failed"]
    hook = (await webhooks.list_webhooks(db, channel.id))[0]
    [entry], more = await delivery.deliveries(db, hook.id)
    assert not more
    assert entry.state == "failed"
    assert entry.last_status == 503
    assert [a.status for a in entry.attempt_log] == [503, 503]


async def test_private_addresses_are_refused_at_delivery_time(db: Database) -> None:
    """Without allow_private, a URL resolving to loopback is never called."""
    _, channel = await owned_channel(db)
    policy = Policy(allow_private=False)
    async with receiving() as receiver, httpx.AsyncClient() as client:
        await webhooks.create_webhook(
            db, channel.id, receiver.url, ["stream.started"], allow_private=True
        )
        await webhooks.enqueue(db, Event("stream.started", "k", channel.id, {}))
        [held] = await delivery.claim(db, policy)
        outcome = await delivery.send(client, held, policy)
    assert outcome.status is None
    assert outcome.error is not None
    assert "non-public" in outcome.error
    assert receiver.requests == []


def test_retries_back_off_up_to_the_cap() -> None:
    """Doubling from the base, never past the cap, never less than half the ceiling."""
    policy = Policy(retry_base=10, retry_cap=60)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        for _ in range(20):
            assert ceiling / 2 <= policy.delay(attempt) <= ceiling
