"""Restream destinations: owner-only REST, every bad input refused, keys never shown back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from stagecast.channels.policy import Grant
from stagecast.channels.service import set_moderator
from stagecast.restream import service
from tests.conftest import RunningServer
from tests.studio.conftest import owned_channel, person

KEY = "live_abcdef_secret_1234"


@pytest.fixture
async def http(db_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=db_server.url, timeout=10) as client:
        yield client


async def test_owners_manage_destinations_and_nobody_else_sees_them(
    db_server: RunningServer, http: httpx.AsyncClient
) -> None:
    db = db_server.core.db
    owner, channel = await owned_channel(db)
    moderator, stranger = await person(db), await person(db)
    await set_moderator(db, channel.id, moderator.account.username, Grant(), owner.account.id)
    base = f"/api/v1/channels/{channel.slug}/destinations"
    body = {"name": "YouTube", "url": "rtmp://a.rtmp.youtube.com/live2", "stream_key": KEY}
    created = await http.post(base, json={**body, "enabled": True}, headers=owner.headers)
    assert created.status_code == 201, created.text
    destination = created.json()
    assert destination["stream_key"] == "…1234"  # stored, never shown back in full
    assert KEY not in created.text
    assert destination["push"] is None  # not live: nothing pushed yet
    listed = await http.get(base, headers=owner.headers)
    assert [d["name"] for d in listed.json()["items"]] == ["YouTube"]
    assert KEY not in listed.text
    changed = await http.patch(
        f"{base}/{destination['id']}",
        json={"enabled": False, "url": "rtmps://live.twitch.tv:443/app"},
        headers=owner.headers,
    )
    assert changed.status_code == 200
    assert changed.json()["enabled"] is False
    assert changed.json()["url"] == "rtmps://live.twitch.tv:443/app"
    for who in (moderator, stranger):
        assert (await http.get(base, headers=who.headers)).status_code == 404
        assert (await http.post(base, json=body, headers=who.headers)).status_code == 404
    assert (await http.get(base)).status_code == 401
    gone = f"{base}/{destination['id']}"
    assert (await http.delete(gone, headers=owner.headers)).status_code == 204
    assert (await http.delete(gone, headers=owner.headers)).status_code == 404
    assert (
        await http.patch(gone, json={"enabled": True}, headers=owner.headers)
    ).status_code == 404
    for n in range(service.MAX_PER_CHANNEL):
        ok = await http.post(base, json={**body, "name": f"d{n}"}, headers=owner.headers)
        assert ok.status_code == 201
    full = await http.post(base, json=body, headers=owner.headers)
    assert full.status_code == 409
    assert "at most" in full.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "http://example.com/live"}, "rtmp:// or rtmps://"),
        ({"url": "rtmp:///live"}, "no host"),
        ({"url": "rtmp://user:pw@example.com/live"}, "credentials"),
        ({"url": "rtmp://example.com/live?x=1"}, "query"),
        ({"url": "rtmp://example.com:99999/live"}, "port"),
        ({"name": "   "}, "name"),
        ({"stream_key": "has spaces in it"}, "stream_key"),
        ({"stream_key": ""}, "stream_key"),
        ({"stream_key": "k" * 513}, ""),
        ({"url": "rtmp://x/" + "a" * 600}, ""),
        ({"extra": 1}, ""),
    ],
)
async def test_bad_destinations_are_refused_with_a_message(
    db_server: RunningServer, http: httpx.AsyncClient, change: dict[str, object], message: str
) -> None:
    owner, channel = await owned_channel(db_server.core.db)
    body = {"name": "YouTube", "url": "rtmp://example.com/live", "stream_key": KEY, **change}
    refused = await http.post(
        f"/api/v1/channels/{channel.slug}/destinations", json=body, headers=owner.headers
    )
    assert refused.status_code == 422, refused.text
    assert message in refused.text
